"""Asking the tier's members at once: per-endpoint semaphores, the tier timeout, an early stop.

Every member runs as its own task from the start; it waits for its endpoint's semaphore (the
seed's "GPU semaphore", one per backend endpoint: ``ensemble.max_concurrent_per_endpoint``
generations at once), then generates.  The tier timeout counts from the fan-out's start,
waiting included: a member still running at the deadline is cancelled and recorded dropped
("timeout after 30 s", logged), and the ensemble goes on with the answers it has.  A member
that raises (a BackendError, a model the backend lacks) is recorded with its error and
stops nobody else.  After each answer, ``settled(answers so far)`` may end the fan-out
early: the members still running are cancelled and recorded dropped ("not needed: settled
early").

No member task outlives :func:`fan_out`: when it returns, raises, or is itself cancelled,
every member task has been cancelled and awaited.  Times come from the event loop's clock,
so tests can run the fan-out on a loop with virtual time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence

from kisystem.config import EnsembleSettings
from kisystem.ensemble.members import FanOut, Generator, Member, MemberAnswer, NotNeeded, RequestFor, Settled, Tier
from kisystem.models.base import Generation

log = logging.getLogger(__name__)
SETTLED_EARLY = "not needed: settled early"
OnAnswer = Callable[[MemberAnswer], None]


class EndpointSemaphores:
    """One asyncio.Semaphore per backend endpoint, each allowing ``limit`` generations at once.

    Share one instance between the fan-outs of one event loop (concurrent ensembles then share the
    limit).  It works within one process; the model client's machine-wide GenerationGate still
    applies to local endpoints on top of it."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"an endpoint semaphore needs at least one slot, not {limit}")
        self.limit = limit
        self._by_endpoint: dict[str, asyncio.Semaphore] = {}

    @classmethod
    def from_settings(cls, settings: EnsembleSettings) -> EndpointSemaphores:
        return cls(settings.max_concurrent_per_endpoint)

    def __getitem__(self, endpoint: str) -> asyncio.Semaphore:
        if endpoint not in self._by_endpoint:
            self._by_endpoint[endpoint] = asyncio.Semaphore(self.limit)
        return self._by_endpoint[endpoint]


async def fan_out(generator: Generator, members: Sequence[Member], request_for: RequestFor, tier: Tier,
                  timeout_s: float, *, endpoint_of: Callable[[str], str], semaphores: EndpointSemaphores,
                  settled: Settled | None = None, on_answer: OnAnswer | None = None) -> FanOut:  # fmt: skip
    """Every member at once; their answers in the order they ended (see the module docstring)."""
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def ask(member: Member) -> Generation:
        async with semaphores[endpoint_of(member.model)]:
            return await generator.generate(request_for(member))

    tasks = {asyncio.create_task(ask(m), name=f"ensemble {m.model} #{m.sample}"): m for m in members}
    run = _Run(tasks, start, loop.time, on_answer)
    try:
        settled_early = await run.collect(start + timeout_s, settled)
        why = SETTLED_EARLY if settled_early else f"timeout after {timeout_s:g} s"
        await run.drop(why)
    finally:
        await _end(tasks)
    return FanOut(tier, tuple(members), tuple(run.answers), loop.time() - start, settled_early, timeout_s)


class _Run:
    """The answers of one fan-out as its member tasks end."""

    def __init__(self, tasks: dict[asyncio.Task[Generation], Member], start: float, clock: Callable[[], float],
                 on_answer: OnAnswer | None) -> None:  # fmt: skip
        self.tasks = tasks
        self.order = {task: i for i, task in enumerate(tasks)}
        self.pending = set(tasks)
        self.start = start
        self.clock = clock
        self.on_answer = on_answer
        self.answers: list[MemberAnswer] = []

    async def collect(self, deadline: float, settled: Settled | None) -> bool:
        """Answers until every member ended or the deadline passed (False), or ``settled`` said so (True)."""
        while self.pending:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return False
            done, self.pending = await asyncio.wait(self.pending, timeout=remaining,
                                                    return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            stop = False
            for task in self._in_order(done):
                self._record(self._answer(task))
                stop = stop or (settled is not None and bool(self.pending) and settled(tuple(self.answers)))
            if stop:
                return True
        return False

    async def drop(self, why: str) -> None:
        """Cancel the members still running and record each as dropped for ``why``."""
        pending, self.pending = self._in_order(self.pending), set()
        await _end(pending)
        for task in pending:
            member = self.tasks[task]
            level = logging.INFO if why == SETTLED_EARLY else logging.WARNING
            log.log(level, "ensemble member %s (sample %d) dropped: %s", member.model, member.sample, why)
            self._record(MemberAnswer(member, None, self._elapsed(), error=why, dropped=True))

    def _answer(self, task: asyncio.Task[Generation]) -> MemberAnswer:
        member = self.tasks[task]
        error = task.exception() if not task.cancelled() else asyncio.CancelledError("cancelled")
        if error is None:
            return MemberAnswer(member, task.result(), self._elapsed())
        why = _describe(error)
        if isinstance(error, NotNeeded):
            log.info("ensemble member %s (sample %d) dropped: %s", member.model, member.sample, why)
            return MemberAnswer(member, None, self._elapsed(), error=str(error), dropped=True)
        log.warning("ensemble member %s (sample %d) failed: %s", member.model, member.sample, why)
        return MemberAnswer(member, None, self._elapsed(), error=why)

    def _record(self, answer: MemberAnswer) -> None:
        self.answers.append(answer)
        if self.on_answer is not None:
            self.on_answer(answer)

    def _elapsed(self) -> float:
        return self.clock() - self.start

    def _in_order(self, tasks: Iterable[asyncio.Task[Generation]]) -> list[asyncio.Task[Generation]]:
        return sorted(tasks, key=self.order.__getitem__)


def _describe(error: BaseException) -> str:
    """One line for a member's error: the message, else the exception's type."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


async def _end(tasks: Iterable[asyncio.Task[Generation]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended, even when this wait is cancelled
    itself (the cancellation is passed on once they have)."""
    remaining = [t for t in tasks if not t.done()]
    for task in remaining:
        task.cancel()
    interrupted: asyncio.CancelledError | None = None
    while remaining:
        try:
            await asyncio.wait(remaining)
        except asyncio.CancelledError as err:
            interrupted = err
        remaining = [t for t in remaining if not t.done()]
    if interrupted is not None:
        raise interrupted
