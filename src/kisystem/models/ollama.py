"""Adapter for Ollama's native API (/api/chat, /api/generate, NDJSON streams)."""

from __future__ import annotations

import re
from typing import Any

from kisystem.errors import BackendResponseError, UsageError
from kisystem.models.base import Endpoint, Generation, GenerationRequest, OnText, Timeouts
from kisystem.models.http import HttpBackend, RetryPolicy, StreamResult, json_error_detail, loads_line

INFO_TIMEOUTS = Timeouts(connect=5.0, read=30.0, total=60.0)
_COUNTERS = ("prompt_eval_count", "eval_count")
_DURATIONS_NS = ("total_duration", "load_duration", "prompt_eval_duration", "eval_duration")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


class OllamaAdapter:
    """Speaks Ollama's native API; always streams so timeouts apply per chunk."""

    def __init__(self, endpoint: Endpoint, retry: RetryPolicy | None = None) -> None:
        self.endpoint = endpoint
        self._http = HttpBackend(endpoint, retry, not_found_hint=lambda m: f"run `ollama pull {m}`")

    async def generate(
        self, request: GenerationRequest, timeouts: Timeouts, on_text: OnText | None = None
    ) -> Generation:
        path, body = build_payload(request)
        stream = _OllamaStream(self._http.where(path, request.model))
        result = await self._http.stream(
            path, body, model=request.model, timeouts=timeouts, parse_line=stream.parse, on_text=on_text
        )
        return stream.generation(result, request.model)

    async def list_models(self, timeouts: Timeouts = INFO_TIMEOUTS) -> list[str]:
        data = await self._http.get_json("/api/tags", timeouts)
        return [m["name"] for m in data.get("models", [])]

    async def running_models(self, timeouts: Timeouts = INFO_TIMEOUTS) -> list[str]:
        data = await self._http.get_json("/api/ps", timeouts)
        return [m["name"] for m in data.get("models", [])]

    async def version(self, timeouts: Timeouts = INFO_TIMEOUTS) -> str:
        data = await self._http.get_json("/api/version", timeouts)
        return str(data.get("version", ""))

    async def count_tokens(self, text: str) -> int | None:
        """Ollama has no tokenize endpoint: the caller estimates."""
        return None

    async def aclose(self) -> None:
        await self._http.aclose()


def build_payload(request: GenerationRequest) -> tuple[str, dict[str, Any]]:
    """The path and JSON body for one request (chat -> /api/chat, completion -> raw /api/generate)."""
    options: dict[str, Any] = {"temperature": request.temperature, "num_predict": request.max_tokens}
    if request.num_ctx is not None:
        options["num_ctx"] = request.num_ctx
    if request.seed is not None:
        options["seed"] = request.seed
    if request.stop:
        options["stop"] = list(request.stop)
    body: dict[str, Any] = {"model": request.model, "stream": True, "options": options}
    if request.keep_alive is not None:
        body["keep_alive"] = _keep_alive(request.keep_alive)
    if request.mode == "chat":
        return "/api/chat", {**body, "messages": request.messages}
    if request.mode == "completion":
        return "/api/generate", {**body, "prompt": request.prompt, "raw": True}
    raise UsageError(f"unknown generation mode {request.mode!r} (choose chat or completion)")


def _keep_alive(value: str) -> str | float:
    # Ollama reads a bare string through Go's ParseDuration, which rejects "-1" or "300".
    return float(value) if _NUMBER.fullmatch(value.strip()) else value


class _OllamaStream:
    """Parses NDJSON lines; keeps the final ``done`` line for its counters."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.final: dict[str, Any] | None = None

    def parse(self, line: str) -> str:
        data = loads_line(line, self.where)
        detail = json_error_detail(data)
        if detail:
            raise BackendResponseError(f"{self.where}: error in stream: {detail}")
        if data.get("done"):
            self.final = data
        message = data.get("message") or {}
        return message.get("content") or data.get("response") or ""

    def generation(self, result: StreamResult, model: str) -> Generation:
        if self.final is None:
            raise BackendResponseError(f"{self.where}: stream ended without a final 'done' line")
        final = self.final
        return Generation(
            text=result.text,
            model=model,
            prompt_tokens=int(final.get("prompt_eval_count") or 0),
            completion_tokens=int(final.get("eval_count") or 0),
            finish_reason=final.get("done_reason"),
            first_token_s=result.first_token_s,
            total_s=result.total_s,
            backend_stats=backend_stats(final),
        )


def backend_stats(final: dict[str, Any]) -> dict[str, float]:
    """Ollama's counters, with its nanosecond durations as ``*_s`` seconds."""
    stats = {k: float(final[k]) for k in _COUNTERS if isinstance(final.get(k), (int, float))}
    for key in _DURATIONS_NS:
        if isinstance(final.get(key), (int, float)):
            stats[f"{key}_s"] = final[key] / 1e9
    if stats.get("eval_duration_s") and "eval_count" in stats:
        stats["eval_tokens_per_s"] = stats["eval_count"] / stats["eval_duration_s"]
    return stats
