"""Scripted models and virtual time for the ensemble's tests (never what a user runs).

:class:`ScriptedGenerator` answers each model after a scripted delay, or raises, and counts the
generations in flight per endpoint.  :func:`run_virtual` runs a coroutine on an event loop
whose clock jumps to the next timer whenever nothing is ready, so a member that "takes 100 s"
takes no real time and every time a test reads is exact.
"""

from __future__ import annotations

import asyncio
import selectors
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from kisystem.ensemble.members import Member
from kisystem.models.base import Generation, GenerationRequest, OnText

T = TypeVar("T")
Step = tuple[float, "str | BaseException"]  # (seconds it takes, the answer or what it raises)


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time: when nothing is ready, its clock jumps to the next timer."""

    def __init__(self) -> None:
        super().__init__(selectors.DefaultSelector())
        self._virtual_now = 0.0
        real_select = self._selector.select  # type: ignore[attr-defined]

        def select(timeout: float | None = None) -> list[Any]:
            events = real_select(0)
            if events:
                return events
            if timeout is None:
                raise RuntimeError("virtual time: nothing is ready and no timer is due (a deadlock)")
            self._virtual_now += timeout
            return events

        self._selector.select = select  # type: ignore[attr-defined]

    def time(self) -> float:
        return self._virtual_now


def run_virtual(coro: Coroutine[Any, Any, T]) -> T:
    loop = VirtualTimeLoop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


class ScriptedGenerator:
    """Each model's steps in order (its last step repeats); records requests, tasks and cancellations."""

    def __init__(self, script: dict[str, Step | list[Step]], endpoint_of: Callable[[str], str] = lambda m: m) -> None:
        self.script = {model: list(steps) if isinstance(steps, list) else [steps] for model, steps in script.items()}
        self.endpoint_of = endpoint_of
        self.requests: list[GenerationRequest] = []
        self.tasks: list[asyncio.Task[Any]] = []
        self.cancelled: list[str] = []
        self.in_flight: Counter[str] = Counter()
        self.max_in_flight: Counter[str] = Counter()
        self.max_total = 0

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        self.requests.append(request)
        self.tasks.append(asyncio.current_task())  # type: ignore[arg-type]
        steps = self.script[request.model]
        seconds, answer = steps.pop(0) if len(steps) > 1 else steps[0]
        endpoint = self.endpoint_of(request.model)
        self.in_flight[endpoint] += 1
        self.max_in_flight[endpoint] = max(self.max_in_flight[endpoint], self.in_flight[endpoint])
        self.max_total = max(self.max_total, sum(self.in_flight.values()))
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            self.cancelled.append(request.model)
            raise
        finally:
            self.in_flight[endpoint] -= 1
        if isinstance(answer, BaseException):
            raise answer
        return Generation(text=answer, model=request.model, completion_tokens=len(answer.split()), total_s=seconds)


def request_for(member: Member) -> GenerationRequest:
    return GenerationRequest(model=member.model, prompt="q", temperature=member.temperature, seed=member.sample)
