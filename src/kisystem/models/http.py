"""HTTP plumbing shared by the adapters: client, streaming, retries, error translation.

This module is the one boundary where httpx exceptions become kisystem errors; nothing
from httpx escapes :class:`HttpBackend`.

Budgets: ``Timeouts.connect`` and ``Timeouts.read`` (the longest silence between two
chunks, so it also bounds the wait for the first byte) go to httpx; ``Timeouts.total``
bounds the whole call, retries and backoff included.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from kisystem.errors import (
    BackendError,
    BackendResponseError,
    BackendSilent,
    BackendTimeout,
    BackendUnreachable,
    ModelNotFound,
    UsageError,
)
from kisystem.models.base import Endpoint, OnText, Timeouts

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
# Parses one non-empty line of a stream; returns the text it carries ("" for none).
LineParser = Callable[[str], str]

RETRY_STATUSES = frozenset({429, 502, 503})
_NOT_FOUND_WORDS = ("not found", "does not exist", "model_not_found", "no such model")


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying again.

    ``sleep`` is injectable so tests can record delays instead of waiting.
    """

    base_delay: float = 0.5
    max_delay: float = 10.0
    max_retry_after: float = 30.0
    sleep: Sleep = field(default=asyncio.sleep, compare=False)

    def should_retry(self, err: BackendError, streamed: bool) -> bool:
        if streamed:
            return False
        if isinstance(err, BackendUnreachable):
            return True
        if isinstance(err, BackendSilent):
            return False
        if isinstance(err, BackendTimeout):
            return err.before_first_token
        if isinstance(err, BackendResponseError):
            return err.status in RETRY_STATUSES
        return False

    def delay(self, attempt: int, err: BackendError) -> float:
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return min(self.base_delay * 2**attempt, self.max_delay)


@dataclass
class StreamResult:
    """The text of one streamed call and its timings (seconds from the call's start)."""

    text: str
    first_token_s: float | None
    total_s: float


@dataclass
class _Progress:
    """What the current call has seen so far; decides retry and timeout wording."""

    started: float = field(default_factory=time.monotonic)
    parts: list[str] = field(default_factory=list)
    first_token_s: float | None = None
    last_error: str = ""

    @property
    def streamed(self) -> bool:
        return self.first_token_s is not None

    def add(self, text: str, on_text: OnText | None) -> None:
        if not text:
            return
        if self.first_token_s is None:
            self.first_token_s = time.monotonic() - self.started
        self.parts.append(text)
        if on_text is not None:
            on_text(text)

    def result(self) -> StreamResult:
        total = time.monotonic() - self.started
        return StreamResult("".join(self.parts), self.first_token_s, total)


def httpx_timeout(timeouts: Timeouts) -> httpx.Timeout:
    """Connect budget plus a per-chunk read (and write/pool) budget."""
    return httpx.Timeout(timeouts.read, connect=timeouts.connect)


def make_client(endpoint: Endpoint, timeouts: Timeouts | None = None) -> httpx.AsyncClient:
    """An AsyncClient for ``endpoint`` with its auth header and default timeouts."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    return httpx.AsyncClient(
        base_url=endpoint.base_url.rstrip("/"),
        headers=headers,
        timeout=httpx_timeout(timeouts or Timeouts()),
    )


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After in seconds; HTTP-date values are ignored (None)."""
    if not value:
        return None
    try:
        return max(float(value.strip()), 0.0)
    except ValueError:
        return None


def error_detail(body: bytes) -> str:
    """The human part of an error body: ``error`` / ``error.message`` / ``message`` / text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:300]
    return json_error_detail(data) or text[:300]


def json_error_detail(data: Any) -> str | None:
    """The message of a JSON error object, or None when ``data`` is not one."""
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        return str(err.get("message") or err)
    if err:
        return str(err)
    if data.get("object") == "error":
        return str(data.get("message") or data)
    return None


def loads_line(line: str, where: str) -> Any:
    """JSON-decode one line or body, as a BackendResponseError when it is malformed."""
    try:
        return json.loads(line)
    except ValueError as exc:
        raise BackendResponseError(f"{where}: malformed JSON {line[:120]!r}") from exc


class HttpBackend:
    """One endpoint's HTTP client with the retry policy and error translation.

    ``not_found_hint`` turns a model name into advice appended to ModelNotFound.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        retry: RetryPolicy | None = None,
        not_found_hint: Callable[[str], str] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.retry = retry or RetryPolicy()
        self._hint = not_found_hint or (lambda model: "")
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = make_client(self.endpoint)
        return self._client

    def url(self, path: str) -> str:
        return self.endpoint.base_url.rstrip("/") + path

    def where(self, path: str, model: str = "") -> str:
        """Names the endpoint, URL and model for one-line error messages."""
        suffix = f" model {model!r}" if model else ""
        return f"{self.endpoint.name} ({self.url(path)}){suffix}"

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def get_json(self, path: str, timeouts: Timeouts | None = None) -> Any:
        """GET ``path`` and decode its JSON body, with retries and the total budget."""
        timeouts = timeouts or Timeouts()

        progress = _Progress()

        async def once() -> Any:
            with self._translate(path, "", timeouts, progress):
                response = await self.client.get(path, timeout=httpx_timeout(timeouts))
                if response.status_code >= 400:
                    raise self._status_error(response, path, "")
                return loads_line(response.text, self.where(path))

        return await self._call(once, path, "", timeouts, progress)

    async def post_json(self, path: str, body: dict[str, Any], timeouts: Timeouts) -> Any:
        """POST ``body`` and decode the JSON answer, with retries and the total budget."""
        progress = _Progress()

        async def once() -> Any:
            with self._translate(path, "", timeouts, progress):
                response = await self.client.post(path, json=body, timeout=httpx_timeout(timeouts))
                if response.status_code >= 400:
                    raise self._status_error(response, path, "")
                return loads_line(response.text, self.where(path))

        return await self._call(once, path, "", timeouts, progress)

    async def stream(
        self,
        path: str,
        body: dict[str, Any],
        *,
        model: str,
        timeouts: Timeouts,
        parse_line: LineParser,
        on_text: OnText | None = None,
    ) -> StreamResult:
        """POST ``body`` and feed each non-empty response line to ``parse_line``."""
        progress = _Progress()

        async def once() -> StreamResult:
            with self._translate(path, model, timeouts, progress):
                async with _FirstTokenBudget(timeouts.first_token, self.where(path, model)) as first:
                    request = self.client.build_request("POST", path, json=body, timeout=httpx_timeout(timeouts))
                    response = await self.client.send(request, stream=True)
                    try:
                        await self._read_stream(response, path, model, parse_line, progress, on_text, first)
                    finally:
                        await response.aclose()
            return progress.result()

        return await self._call(once, path, model, timeouts, progress)

    async def _read_stream(
        self,
        response: httpx.Response,
        path: str,
        model: str,
        parse_line: LineParser,
        progress: _Progress,
        on_text: OnText | None,
        first: asyncio.Timeout,
    ) -> None:
        if response.status_code >= 400:
            await response.aread()
            raise self._status_error(response, path, model)
        async for line in response.aiter_lines():
            if line.strip():
                progress.add(parse_line(line), on_text)
                if progress.streamed and first.when() is not None:
                    first.reschedule(None)  # the budget covers the first token only

    async def _call(
        self,
        once: Callable[[], Awaitable[T]],
        path: str,
        model: str,
        timeouts: Timeouts,
        progress: _Progress,
    ) -> T:
        try:
            async with asyncio.timeout(timeouts.total):
                return await self._with_retries(once, progress)
        except TimeoutError as exc:
            raise BackendTimeout(
                f"{self.where(path, model)}: timed out: no complete answer within the total budget of "
                f"{timeouts.total:g} s ({_phase(progress)}){_last(progress)}",
                before_first_token=not progress.streamed,
            ) from exc

    async def _with_retries(self, once: Callable[[], Awaitable[T]], progress: _Progress) -> T:
        attempt = 0
        while True:
            try:
                return await once()
            except BackendError as err:
                progress.last_error = str(err)
                if attempt >= self.endpoint.retries or not self.retry.should_retry(err, progress.streamed):
                    raise
                await self.retry.sleep(self.retry.delay(attempt, err))
                attempt += 1

    def _status_error(self, response: httpx.Response, path: str, model: str) -> BackendError:
        status = response.status_code
        detail = error_detail(response.content)
        if status == 404 and model and any(w in detail.lower() for w in _NOT_FOUND_WORDS):
            hint = self._hint(model)
            return ModelNotFound(model, self.url(""), "; ".join(p for p in (detail, hint) if p))
        return BackendResponseError(
            f"{self.where(path, model)}: HTTP {status}: {detail or response.reason_phrase}",
            status=status,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        )

    def _translate(self, path: str, model: str, timeouts: Timeouts, progress: _Progress) -> _Translate:
        return _Translate(self.where(path, model), timeouts, progress)


class _Translate:
    """Context manager turning httpx exceptions into kisystem errors."""

    def __init__(self, where: str, timeouts: Timeouts, progress: _Progress) -> None:
        self.where = where
        self.timeouts = timeouts
        self.progress = progress

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, httpx.HTTPError):
            raise self._convert(exc) from exc
        if isinstance(exc, httpx.InvalidURL):
            raise UsageError(f"{self.where}: invalid URL ({exc})") from exc

    def _convert(self, exc: httpx.HTTPError) -> Exception:
        where, phase = self.where, _phase(self.progress)
        if isinstance(exc, httpx.ConnectTimeout):
            return BackendTimeout(f"{where}: connect timed out after {self.timeouts.connect:g} s")
        if isinstance(exc, httpx.TimeoutException):
            return BackendTimeout(
                f"{where}: no data for {self.timeouts.read:g} s ({phase})",
                before_first_token=not self.progress.streamed,
            )
        if isinstance(exc, httpx.ConnectError):
            return BackendUnreachable(f"{where}: cannot connect ({exc or type(exc).__name__})")
        if isinstance(exc, httpx.UnsupportedProtocol):
            return UsageError(f"{where}: unsupported URL ({exc})")
        if isinstance(exc, httpx.TransportError) and not self.progress.streamed:
            return BackendUnreachable(f"{where}: connection failed ({exc or type(exc).__name__})")
        return BackendResponseError(f"{where}: {type(exc).__name__} ({phase}): {exc}")


class _FirstTokenBudget:
    """``asyncio.timeout(seconds)`` that becomes BackendSilent when it is the one that expired
    (the total budget outside it keeps its own wording)."""

    def __init__(self, seconds: float | None, where: str) -> None:
        self.seconds = seconds
        self.where = where
        self._timeout = asyncio.timeout(seconds)

    async def __aenter__(self) -> asyncio.Timeout:
        return await self._timeout.__aenter__()

    async def __aexit__(self, exc_type, exc, tb) -> bool | None:
        try:
            return await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError as err:
            if not self._timeout.expired():
                raise
            raise BackendSilent(
                f"{self.where}: no first token within {self.seconds:.1f} s (config first_token_timeout_s plus "
                "the prompt's reading time); the backend took the request but sent nothing") from err


def _last(progress: _Progress) -> str:
    return f"; last error: {progress.last_error}" if progress.last_error else ""


def _phase(progress: _Progress) -> str:
    if progress.streamed:
        return f"after {sum(map(len, progress.parts))} characters had streamed"
    return "before the first token"
