"""Adapter for OpenAI-compatible servers: vLLM, llama.cpp server, LM Studio, Ollama /v1.

``base_url`` may be given with or without a trailing ``/v1``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kisystem.errors import BackendResponseError, UsageError
from kisystem.models.base import Endpoint, Generation, GenerationRequest, OnText, Timeouts
from kisystem.models.http import HttpBackend, RetryPolicy, StreamResult, json_error_detail, loads_line

INFO_TIMEOUTS = Timeouts(connect=5.0, read=30.0, total=60.0)


class OpenAICompatAdapter:
    """Speaks /v1/chat/completions and /v1/completions with SSE streaming."""

    def __init__(self, endpoint: Endpoint, retry: RetryPolicy | None = None) -> None:
        self.endpoint = endpoint
        self._http = HttpBackend(_without_v1(endpoint), retry)

    async def generate(
        self, request: GenerationRequest, timeouts: Timeouts, on_text: OnText | None = None
    ) -> Generation:
        path, body = build_payload(request)
        stream = _SseStream(self._http.where(path, request.model), chat=request.mode == "chat")
        result = await self._http.stream(
            path, body, model=request.model, timeouts=timeouts, parse_line=stream.parse, on_text=on_text
        )
        return stream.generation(result, request.model)

    async def list_models(self, timeouts: Timeouts = INFO_TIMEOUTS) -> list[str]:
        data = await self._http.get_json("/v1/models", timeouts)
        return [m["id"] for m in data.get("data", [])]

    async def count_tokens(self, text: str, timeouts: Timeouts = INFO_TIMEOUTS) -> int | None:
        """Tokens of ``text`` by the server's own tokenizer (llama.cpp and vLLM ``/tokenize``);
        None when the server has no such endpoint."""
        try:
            data = await self._http.post_json("/tokenize", {"content": text}, timeouts)
        except BackendResponseError:
            return None
        if not isinstance(data, dict):
            return None
        if isinstance(data.get("count"), int):  # vLLM
            return data["count"]
        return len(data["tokens"]) if isinstance(data.get("tokens"), list) else None  # llama.cpp

    async def aclose(self) -> None:
        await self._http.aclose()


def _without_v1(endpoint: Endpoint) -> Endpoint:
    base = endpoint.base_url.rstrip("/")
    return replace(endpoint, base_url=base.removesuffix("/v1"))


def build_payload(request: GenerationRequest) -> tuple[str, dict[str, Any]]:
    """The path and JSON body for one streamed request."""
    body: dict[str, Any] = {
        "model": request.model,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    if request.stop:
        body["stop"] = list(request.stop)
    if request.mode == "chat":
        return "/v1/chat/completions", {**body, "messages": request.messages}
    if request.mode == "completion":
        return "/v1/completions", {**body, "prompt": request.prompt}
    raise UsageError(f"unknown generation mode {request.mode!r} (choose chat or completion)")


class _SseStream:
    """Parses ``data:`` lines; keeps usage, llama.cpp timings and the finish reason."""

    def __init__(self, where: str, chat: bool) -> None:
        self.where = where
        self.chat = chat
        self.done = False
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, float] = {}

    def parse(self, line: str) -> str:
        if line.startswith("{"):  # a bare JSON error body sent with status 200
            self._raise_if_error(loads_line(line, self.where))
            return ""
        if not line.startswith("data:"):
            return ""  # event:, id:, retry: and ": comment" lines
        payload = line[5:].strip()
        if payload == "[DONE]":
            self.done = True
            return ""
        return self._chunk(loads_line(payload, self.where))

    def _chunk(self, chunk: dict[str, Any]) -> str:
        self._raise_if_error(chunk)
        self.usage = chunk.get("usage") or self.usage
        if isinstance(chunk.get("timings"), dict):
            self.timings = {k: float(v) for k, v in chunk["timings"].items() if isinstance(v, (int, float))}
        choices = chunk.get("choices") or []
        if not choices:
            return ""
        choice = choices[0]
        self.finish_reason = choice.get("finish_reason") or self.finish_reason
        if self.chat:
            return (choice.get("delta") or {}).get("content") or ""
        return choice.get("text") or ""

    def _raise_if_error(self, data: Any) -> None:
        detail = json_error_detail(data)
        if detail:
            raise BackendResponseError(f"{self.where}: error in stream: {detail}")

    def generation(self, result: StreamResult, model: str) -> Generation:
        if not (self.done or self.finish_reason):
            raise BackendResponseError(f"{self.where}: stream ended before [DONE] or a finish reason")
        return Generation(
            text=result.text,
            model=model,
            prompt_tokens=int(self.usage.get("prompt_tokens") or self.timings.get("prompt_n") or 0),
            completion_tokens=int(self.usage.get("completion_tokens") or self.timings.get("predicted_n") or 0),
            finish_reason=self.finish_reason,
            first_token_s=result.first_token_s,
            total_s=result.total_s,
            backend_stats=dict(self.timings),
        )
