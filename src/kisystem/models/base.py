"""The one small interface every model backend speaks.

An adapter speaks exactly one wire API (Ollama native, OpenAI-compatible).  It takes a
:class:`GenerationRequest` and returns a :class:`Generation`; it streams internally so
that per-chunk read timeouts and a first-token latency can be measured, and hands each
text chunk to an optional ``on_text`` callback for live views.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

Mode = Literal["chat", "completion"]
OnText = Callable[[str], None]


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed: to connect, between two chunks, for the first token of a streamed
    answer (None: only the chunk gap bounds it), and for the whole call."""

    connect: float = 10.0
    read: float = 120.0
    total: float = 300.0
    first_token: float | None = None


@dataclass(frozen=True)
class Endpoint:
    """Where a backend listens and how long to wait for it."""

    name: str
    backend: Literal["ollama", "openai"]
    base_url: str
    api_key: str | None = None
    retries: int = 2


@dataclass
class GenerationRequest:
    """One call to a model.  ``mode`` picks chat messages or a raw completion prompt."""

    model: str
    mode: Mode = "chat"
    messages: list[dict[str, str]] = field(default_factory=list)
    prompt: str = ""
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    num_ctx: int | None = None
    keep_alive: str | None = None


@dataclass
class Generation:
    """What a model answered, with its token counts and timings."""

    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    first_token_s: float | None = None
    total_s: float = 0.0
    backend_stats: dict[str, float] = field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ModelAdapter(Protocol):
    """A backend that can generate text and tell which models it has."""

    endpoint: Endpoint

    async def generate(
        self, request: GenerationRequest, timeouts: Timeouts, on_text: OnText | None = None
    ) -> Generation: ...

    async def list_models(self) -> list[str]: ...

    async def count_tokens(self, text: str) -> int | None: ...

    async def aclose(self) -> None: ...
