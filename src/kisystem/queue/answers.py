"""Model answers stored per queued task, so a restarted attempt replays them instead of asking again.

:class:`CachingGenerator` wraps any generator.  A request is keyed by the queued task's id
and a hash of everything that shapes the answer (model, mode, messages or prompt,
temperature, seed, stop, max_tokens).  A stored answer is returned as it is; a new one is
committed to the database before it is returned, so a crash after that point never costs
the same generation twice.  After a crash the loop replays deterministically up to where
it died: the same prompts come back, the stored answers answer them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.store.queue import QueueStore, StoredAnswer

if TYPE_CHECKING:
    from kisystem.loop.supervisor import Generator

CACHED_STAT = "cached"  # set to 1.0 in Generation.backend_stats when an answer was replayed


def request_key(request: GenerationRequest) -> str:
    """A stable hash of the parts of a request that decide the answer."""
    shape = {
        "model": request.model, "mode": request.mode, "messages": request.messages,
        "prompt": request.prompt, "temperature": request.temperature, "seed": request.seed,
        "stop": list(request.stop), "max_tokens": request.max_tokens,
    }  # fmt: skip
    text = json.dumps(shape, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


class CachingGenerator:
    """A :class:`Generator` that answers from the queue's stored answers of one task first.

    ``on_stream`` is called once when a fresh generation streams its first text (the
    runner's crash hook uses it: that moment is "during generation").
    """

    def __init__(self, inner: Generator, answers: QueueStore, task_id: int,
                 on_stream: Callable[[], None] | None = None) -> None:  # fmt: skip
        self.inner = inner
        self.answers = answers
        self.task_id = task_id
        self.on_stream = on_stream
        self.replayed = 0
        self.generated = 0

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        key = request_key(request)  # before the inner call: a client may rewrite the request
        stored = self.replay(key)
        if stored is not None:
            if on_text:
                on_text(stored.text)
            return stored
        generation = await self.inner.generate(request, self._streaming(on_text))
        self.keep(key, generation)
        return generation

    def replay(self, key: str) -> Generation | None:
        """The stored answer to the request of ``key`` (see :func:`request_key`), or None."""
        stored = self.answers.answer(self.task_id, key)
        if stored is None:
            return None
        self.replayed += 1
        return _generation(stored)

    def keep(self, key: str, generation: Generation) -> None:
        """Commit a fresh answer, also one generated elsewhere (a Ray worker's), before it is used."""
        self.answers.save_answer(self.task_id, key, _stored(generation))
        self.generated += 1

    def _streaming(self, on_text: OnText | None) -> OnText | None:
        if self.on_stream is None:
            return on_text
        first = [True]

        def chunk(text: str) -> None:
            if first[0] and self.on_stream is not None:
                first[0] = False
                self.on_stream()
            if on_text:
                on_text(text)

        return chunk


def _stored(g: Generation) -> StoredAnswer:
    return StoredAnswer(g.model, g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason,
                        g.first_token_s, g.total_s)  # fmt: skip


def _generation(a: StoredAnswer) -> Generation:
    return Generation(text=a.text, model=a.model, prompt_tokens=a.prompt_tokens,
                      completion_tokens=a.completion_tokens, finish_reason=a.finish_reason,
                      first_token_s=a.first_token_s, total_s=a.total_s, backend_stats={CACHED_STAT: 1.0})  # fmt: skip
