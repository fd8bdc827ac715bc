"""A prompt's size in tokens, measured before it is sent, and whether it fits the model.

The server's own tokenizer counts where it has one (llama.cpp and vLLM ``/tokenize``);
elsewhere, and for prompts far over the context, a safe estimate over-counts on purpose.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kisystem.errors import BackendError, PromptTooLong
from kisystem.models.base import GenerationRequest, ModelAdapter

# The embedded models' tokenizers took 2.3-4.4 bytes per token of code, English and German;
# 2 over-counts all of them (a run of digits, one token per digit in Qwen's, is the exception).
BYTES_PER_TOKEN_FLOOR = 2
MESSAGE_OVERHEAD_TOKENS = 8  # a chat template's role markers around each message
MIN_ANSWER_TOKENS = 128  # a prompt leaving less room than this for the answer does not fit
# An estimate this many contexts long is over the context by any tokenizer above (>= 1.36x).
EXACT_COUNT_MAX_FACTOR = 3


@dataclass(frozen=True)
class PromptSize:
    tokens: int
    exact: bool  # counted by the server's tokenizer (plus the template overhead), not estimated


def prompt_text(request: GenerationRequest) -> str:
    if request.mode == "chat":
        return "\n".join(m.get("content", "") for m in request.messages)
    return request.prompt


def template_overhead(request: GenerationRequest) -> int:
    return MESSAGE_OVERHEAD_TOKENS * len(request.messages) if request.mode == "chat" else 0


def estimate_tokens(request: GenerationRequest) -> int:
    """An upper estimate: bytes / 2 plus the template overhead."""
    return math.ceil(len(prompt_text(request).encode()) / BYTES_PER_TOKEN_FLOOR) + template_overhead(request)


class TokenCounter:
    """Measures prompts; remembers endpoints without a tokenizer so they are asked once."""

    def __init__(self) -> None:
        self._without_tokenizer: set[str] = set()

    async def measure(self, adapter: ModelAdapter, request: GenerationRequest, context: int | None) -> PromptSize:
        estimate = estimate_tokens(request)
        endpoint = adapter.endpoint.name
        if endpoint in self._without_tokenizer or (context and estimate > EXACT_COUNT_MAX_FACTOR * context):
            return PromptSize(estimate, exact=False)
        try:
            counted = await adapter.count_tokens(prompt_text(request))
        except BackendError:  # the generation that follows reports a dead backend better
            return PromptSize(estimate, exact=False)
        if counted is None:
            self._without_tokenizer.add(endpoint)
            return PromptSize(estimate, exact=False)
        return PromptSize(counted + template_overhead(request), exact=True)


def answer_budget(model: str, size: PromptSize, context: int | None, max_tokens: int) -> int:
    """The max_tokens that fit beside the prompt; PromptTooLong when under MIN_ANSWER_TOKENS fit."""
    if context is None:
        return max_tokens
    room = context - size.tokens
    if room < min(MIN_ANSWER_TOKENS, max_tokens):
        raise PromptTooLong(model, size.tokens, context, exact=size.exact)
    return min(max_tokens, room)
