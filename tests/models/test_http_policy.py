"""Retry policy, total budget and error translation, for both adapters."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from werkzeug import Response

from kisystem.errors import (
    BackendError,
    BackendResponseError,
    BackendSilent,
    BackendTimeout,
    BackendUnreachable,
    ModelNotFound,
    UsageError,
)
from kisystem.models.adapters import make_adapter
from kisystem.models.base import Endpoint, GenerationRequest, Timeouts
from kisystem.models.http import RetryPolicy, parse_retry_after
from kisystem.models.ollama import OllamaAdapter
from kisystem.models.openai_compat import OpenAICompatAdapter

FAST = Timeouts(connect=1.0, read=2.0, total=5.0)
REQUEST = GenerationRequest(model="m", messages=[{"role": "user", "content": "hi"}])


@dataclass
class Backend:
    kind: str
    path: str
    ok_body: str


@pytest.fixture(params=["ollama", "openai"])
def backend(request, wire) -> Backend:
    if request.param == "ollama":
        lines = [{"message": {"content": "hello"}, "done": False}, {"done": True, "eval_count": 1}]
        return Backend("ollama", "/api/chat", wire.ndjson(lines))
    chunks = [{"choices": [{"delta": {"content": "hello"}, "finish_reason": "stop"}]}]
    return Backend("openai", "/v1/chat/completions", wire.sse(chunks))


def adapter_for(backend: Backend, url: str, retry: RetryPolicy, retries: int = 2):
    return make_adapter(Endpoint(f"{backend.kind}-test", backend.kind, url, retries=retries), retry)


def status_response(status: int, retry_after: str | None = None) -> Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return Response('{"error": "busy"}', status=status, headers=headers, content_type="application/json")


# --- the policy itself -------------------------------------------------------------------


def test_backoff_is_exponential_and_capped():
    policy = RetryPolicy(base_delay=0.5, max_delay=3.0)
    err = BackendUnreachable("x")
    assert [policy.delay(n, err) for n in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_retry_after_is_honoured_and_capped():
    policy = RetryPolicy(base_delay=0.5, max_retry_after=30.0)
    assert policy.delay(0, BackendResponseError("x", status=429, retry_after=7.0)) == 7.0
    assert policy.delay(3, BackendResponseError("x", status=503, retry_after=3600.0)) == 30.0


@pytest.mark.parametrize(
    ("err", "streamed", "expected"),
    [
        (BackendUnreachable("x"), False, True),
        (BackendTimeout("x", before_first_token=True), False, True),
        (BackendTimeout("x", before_first_token=False), True, False),
        (BackendTimeout("x", before_first_token=False), False, False),
        (BackendResponseError("x", status=429), False, True),
        (BackendResponseError("x", status=502), False, True),
        (BackendResponseError("x", status=503), False, True),
        (BackendResponseError("x", status=500), False, False),
        (BackendResponseError("x", status=400), False, False),
        (BackendResponseError("x", status=404), False, False),
        (ModelNotFound("m", "http://h"), False, False),
        (BackendUnreachable("x"), True, False),
    ],
)
def test_should_retry(err: BackendError, streamed: bool, expected: bool):
    assert RetryPolicy().should_retry(err, streamed) is expected


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("2", 2.0), (" 1.5 ", 1.5), ("-3", 0.0), ("Wed, 21 Oct 2015 07:28:00 GMT", None), (None, None)],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value) == seconds


# --- retries over the wire ----------------------------------------------------------------


async def test_503_exhausts_endpoint_retries_with_backoff(httpserver, backend, retry, sleeps):
    httpserver.expect_request(backend.path).respond_with_response(status_response(503))
    adapter = adapter_for(backend, httpserver.url_for("/"), retry, retries=2)
    with pytest.raises(BackendResponseError) as info:
        await adapter.generate(REQUEST, FAST)
    assert info.value.status == 503
    assert len(httpserver.log) == 3
    assert sleeps.delays == [0.01, 0.02]
    await adapter.aclose()


async def test_zero_retries_means_one_attempt(httpserver, backend, retry, sleeps):
    httpserver.expect_request(backend.path).respond_with_response(status_response(502))
    adapter = adapter_for(backend, httpserver.url_for("/"), retry, retries=0)
    with pytest.raises(BackendResponseError, match="HTTP 502"):
        await adapter.generate(REQUEST, FAST)
    assert (len(httpserver.log), sleeps.delays) == (1, [])
    await adapter.aclose()


async def test_502_then_success(httpserver, backend, retry, sleeps):
    httpserver.expect_oneshot_request(backend.path).respond_with_response(status_response(502))
    httpserver.expect_request(backend.path).respond_with_data(backend.ok_body)
    adapter = adapter_for(backend, httpserver.url_for("/"), retry)
    assert (await adapter.generate(REQUEST, FAST)).text == "hello"
    assert sleeps.delays == [0.01]
    await adapter.aclose()


async def test_read_timeout_before_first_token_is_retried(httpserver, backend, retry, sleeps, release, wire):
    httpserver.expect_oneshot_request(backend.path).respond_with_handler(wire.hanging(release))
    httpserver.expect_request(backend.path).respond_with_data(backend.ok_body)
    adapter = adapter_for(backend, httpserver.url_for("/"), retry)
    start = time.monotonic()
    gen = await adapter.generate(REQUEST, Timeouts(connect=1.0, read=0.3, total=5.0))
    assert gen.text == "hello"
    assert sleeps.delays == [0.01]
    assert 0.3 <= time.monotonic() - start < 1.5
    await adapter.aclose()


async def test_total_budget_covers_retries_and_backoff(httpserver, backend):
    # Real sleeps: a long Retry-After must not carry the call past its total budget.
    httpserver.expect_request(backend.path).respond_with_response(status_response(429, retry_after="20"))
    adapter = adapter_for(backend, httpserver.url_for("/"), RetryPolicy(), retries=5)
    start = time.monotonic()
    with pytest.raises(
        BackendTimeout, match=r"total budget of 0.6 s \(before the first token\); last error: .*HTTP 429"
    ):
        await adapter.generate(REQUEST, Timeouts(connect=1.0, read=2.0, total=0.6))
    assert time.monotonic() - start < 1.5
    assert len(httpserver.log) == 1
    await adapter.aclose()


# --- error translation at the boundary ----------------------------------------------------


@pytest.fixture
def slamming_server() -> Iterator[str]:
    """A server that accepts connections and closes them without a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    stop = threading.Event()

    def serve() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join()
    sock.close()


async def test_server_disconnect_before_response_is_unreachable_and_retried(slamming_server, backend, retry, sleeps):
    adapter = adapter_for(backend, slamming_server, retry, retries=2)
    with pytest.raises(BackendUnreachable, match="connection failed") as info:
        await adapter.generate(REQUEST, FAST)
    assert f"{slamming_server}{backend.path}" in str(info.value)
    assert len(sleeps.delays) == 2
    await adapter.aclose()


async def test_malformed_stream_line_is_a_response_error(httpserver, backend, retry):
    httpserver.expect_request(backend.path).respond_with_data(
        "data: {not json\n" if backend.kind == "openai" else "{not json\n"
    )
    adapter = adapter_for(backend, httpserver.url_for("/"), retry)
    with pytest.raises(BackendResponseError, match="malformed JSON"):
        await adapter.generate(REQUEST, FAST)
    await adapter.aclose()


async def test_unsupported_scheme_is_a_usage_error(backend, retry):
    adapter = adapter_for(backend, "ftp://127.0.0.1:1", retry)
    with pytest.raises(UsageError, match="ftp://127.0.0.1:1"):
        await adapter.generate(REQUEST, FAST)
    await adapter.aclose()


async def test_list_models_translates_errors_and_retries(httpserver, backend, retry, sleeps):
    path = "/api/tags" if backend.kind == "ollama" else "/v1/models"
    httpserver.expect_request(path).respond_with_response(status_response(500))
    adapter = adapter_for(backend, httpserver.url_for("/"), retry)
    with pytest.raises(BackendResponseError, match="HTTP 500") as info:
        await adapter.list_models()
    assert info.value.status == 500 and path in str(info.value)
    assert (len(httpserver.log), sleeps.delays) == (1, [])
    await adapter.aclose()


async def test_list_models_unreachable(dead_url, backend, retry):
    adapter = adapter_for(backend, dead_url, retry, retries=0)
    with pytest.raises(BackendUnreachable, match=dead_url):
        await asyncio.wait_for(adapter.list_models(), 5)
    await adapter.aclose()


# --- adapter selection --------------------------------------------------------------------


def test_make_adapter_picks_by_backend():
    assert isinstance(make_adapter(Endpoint("a", "ollama", "http://h:11434")), OllamaAdapter)
    assert isinstance(make_adapter(Endpoint("b", "openai", "http://h:8000")), OpenAICompatAdapter)


def test_make_adapter_rejects_unknown_backend():
    with pytest.raises(UsageError, match=r"unknown backend 'tgi' \(choose one of: ollama, openai\)"):
        make_adapter(Endpoint("c", "tgi", "http://h:8080"))  # type: ignore[arg-type]


# --- the first-token budget ---------------------------------------------------------------


async def test_a_silent_backend_ends_at_the_first_token_budget_without_retries(
        httpserver, backend, retry, sleeps, release, wire):
    httpserver.expect_request(backend.path).respond_with_handler(wire.hanging(release, seconds=10))
    adapter = adapter_for(backend, httpserver.url_for("/"), retry, retries=2)
    start = time.monotonic()
    with pytest.raises(BackendSilent, match=r"no first token within 0.4 s \(config first_token_timeout_s"):
        await adapter.generate(REQUEST, Timeouts(connect=1.0, read=5.0, total=8.0, first_token=0.4))
    assert time.monotonic() - start < 2.0  # neither the chunk gap (5 s) nor retries
    assert sleeps.delays == []
    await adapter.aclose()


async def test_the_first_token_budget_does_not_bound_a_slow_answer_once_it_streams(httpserver, backend, wire):
    parts = [wire.sse([{"choices": [{"delta": {"content": c}}]}], done=False) for c in "abcd"]
    parts.append(wire.sse([{"choices": [{"delta": {}, "finish_reason": "stop"}]}]))
    if backend.kind == "ollama":
        parts = [wire.ndjson([{"message": {"content": c}, "done": False}]) for c in "abcd"]
        parts.append(wire.ndjson([{"done": True, "eval_count": 4}]))
    httpserver.expect_request(backend.path).respond_with_response(wire.streaming(parts, gap=0.25))
    adapter = adapter_for(backend, httpserver.url_for("/"), RetryPolicy())
    gen = await adapter.generate(REQUEST, Timeouts(connect=1.0, read=5.0, total=8.0, first_token=0.4))
    assert gen.text == "abcd"  # about 1 s in all, over twice the first-token budget
    await adapter.aclose()
