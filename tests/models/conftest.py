"""Shared fixtures for the adapter tests: a threaded local HTTP server and stream helpers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from kisystem.models.http import RetryPolicy


@pytest.fixture(scope="session")
def make_httpserver() -> Iterator[HTTPServer]:
    # Threaded, so a handler that hangs cannot block the next test's requests.
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


class Release:
    """Lets hanging handlers go at teardown and waits for their server threads.

    Waiting matters: the server is shared, and a handler finishing late would log its
    request into the next test's ``httpserver.log``.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.threads: list[threading.Thread] = []

    def wait(self, seconds: float) -> None:
        self.threads.append(threading.current_thread())
        self.event.wait(seconds)

    def finish(self) -> None:
        self.event.set()
        for thread in self.threads:
            thread.join(5.0)


@pytest.fixture
def release() -> Iterator[Release]:
    release = Release()
    yield release
    release.finish()


class SleepRecorder:
    """Stands in for asyncio.sleep: records each backoff delay, waits for none."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def sleeps() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def retry(sleeps: SleepRecorder) -> RetryPolicy:
    return RetryPolicy(base_delay=0.01, sleep=sleeps)


@pytest.fixture
def dead_url() -> str:
    """A URL on a local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Wire:
    """Builders for response bodies and handlers (a fixture, since conftest is not importable)."""

    @staticmethod
    def ndjson(objs: list[dict[str, Any]]) -> str:
        return "".join(json.dumps(o) + "\n" for o in objs)

    @staticmethod
    def sse(objs: list[dict[str, Any]], done: bool = True) -> str:
        lines = [f"data: {json.dumps(o)}\n\n" for o in objs]
        return "".join(lines) + ("data: [DONE]\n\n" if done else "")

    @staticmethod
    def streaming(
        parts: list[str],
        *,
        gap: float = 0.0,
        hang_after: int | None = None,
        release: Release | None = None,
        content_type: str = "application/x-ndjson",
    ) -> Response:
        """A chunked response yielding ``parts`` one by one; optionally hanging mid-way."""

        def body() -> Iterator[bytes]:
            for i, part in enumerate(parts):
                if i == hang_after and release is not None:
                    release.wait(3.0)
                yield part.encode()
                time.sleep(gap)

        return Response(body(), content_type=content_type)

    @staticmethod
    def hanging(release: Release, seconds: float = 3.0) -> Callable[[Request], Response]:
        """A handler that says nothing for ``seconds`` (or until the test ends)."""

        def handler(request: Request) -> Response:
            release.wait(seconds)
            return Response("{}", content_type="application/json")

        return handler


@pytest.fixture
def wire() -> type[Wire]:
    return Wire
