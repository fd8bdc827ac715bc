"""One place that turns "ask model M" into the right adapter call with M's budget."""

from __future__ import annotations

from dataclasses import replace
from typing import Literal, Self

from kisystem.models.adapters import make_adapter
from kisystem.models.base import (
    Endpoint,
    Generation,
    GenerationRequest,
    ModelAdapter,
    OnText,
    Timeouts,
)
from kisystem.models.context import PromptSize, TokenCounter, answer_budget
from kisystem.models.gate import GenerationGate, is_local
from kisystem.models.inventory import Inventory, ModelSpec

CONNECT_TIMEOUT_S = 5.0
MAX_CHUNK_GAP_S = 60.0
# The first token waits for the whole prompt to be read: the 1.5B reads ~50 tokens/s on two
# quiet cores, so half that is allowed on top of the configured silence.
PROMPT_TOKENS_PER_S_FLOOR = 25.0


def timeouts_for(spec: ModelSpec, first_token_s: float | None = None, prompt_tokens: int = 0) -> Timeouts:
    """Connect fast, allow a long gap between chunks, the inventory's total per call, and
    ``first_token_s`` of silence (plus the prompt's reading time) before the first token."""
    first = None if first_token_s is None else first_token_s + prompt_tokens / PROMPT_TOKENS_PER_S_FLOOR
    return Timeouts(connect=CONNECT_TIMEOUT_S, read=min(MAX_CHUNK_GAP_S, spec.timeout_s), total=spec.timeout_s,
                    first_token=first)


class ModelClient:
    """Adapters per endpoint, shared by every call to a model on that endpoint.

    Generations by endpoints on this machine take a slot of ``gate`` first (by default the
    kisystem home's gate with the automatic slot count; None: no gate).  Every prompt is
    measured first: one that cannot fit its model's context raises PromptTooLong unsent, and
    the answer's max_tokens shrinks to what fits beside it.  Ollama is asked for the model's
    ``context_tokens`` as num_ctx, so that it serves the context prompts are checked against
    (kisystem's own servers are started with it; another OpenAI-compatible server has its own).
    """

    def __init__(self, inventory: Inventory, gate: GenerationGate | Literal["auto"] | None = "auto",
                 first_token_timeout_s: float | None = None) -> None:
        self.inventory = inventory
        self.gate = GenerationGate.for_paths() if gate == "auto" else gate
        self.first_token_timeout_s = first_token_timeout_s
        self._adapters: dict[str, ModelAdapter] = {}
        self._counter = TokenCounter()

    def adapter_for(self, model: str) -> ModelAdapter:
        endpoint = self.inventory.endpoint_of(model)
        if endpoint.name not in self._adapters:
            self._adapters[endpoint.name] = make_adapter(endpoint)
        return self._adapters[endpoint.name]

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        """Send ``request`` to its model; the mode is the inventory's, not the caller's."""
        spec = self.inventory.model(request.model)
        request.mode = spec.mode
        adapter = self.adapter_for(spec.name)
        size = await self.measure(request)
        request.max_tokens = answer_budget(spec.name, size, spec.context_tokens, request.max_tokens)
        timeouts = timeouts_for(spec, self.first_token_timeout_s, size.tokens)
        sent = _with_context(request, spec, self.inventory.endpoint_of(spec.name))
        if self.gate is None or not is_local(self.inventory.endpoint_of(spec.name).base_url):
            return await adapter.generate(sent, timeouts, on_text)
        async with self.gate.hold() as waited:
            generation = await adapter.generate(sent, timeouts, on_text)
        # total_s is timed inside the adapter, so the model-seconds exclude this wait.
        generation.backend_stats["gate_wait_s"] = waited
        return generation

    async def measure(self, request: GenerationRequest) -> PromptSize:
        """The prompt's tokens by its model's server tokenizer, or a safe over-estimate."""
        spec = self.inventory.model(request.model)
        return await self._counter.measure(self.adapter_for(spec.name), request, spec.context_tokens)

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
        self._adapters.clear()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()


def _with_context(request: GenerationRequest, spec: ModelSpec, endpoint: Endpoint) -> GenerationRequest:
    """What the adapter is sent: for Ollama, with the model's context as num_ctx unless the request
    names one.  A copy: the caller's request (a cache key) stays as asked."""
    if endpoint.backend != "ollama" or request.num_ctx is not None or spec.context_tokens is None:
        return request
    return replace(request, num_ctx=spec.context_tokens)
