"""Shared by the queue tests: a deterministic scripted model, trivial tasks, a runner built on them."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

from kisystem.config import OptimizationConfig
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import TaskSpec, load_task
from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.models.inventory import parse_inventory
from kisystem.queue.answers import request_key
from kisystem.queue.ordering import Ordering
from kisystem.queue.runner import QueueRunner, RunnerSettings, derive_supervisor, submission_for
from kisystem.store.learning import LearningStore
from kisystem.store.queue import QueueStore, Submission

ADD_SPEC = Path(__file__).parents[1] / "loop" / "data" / "loop" / "add.toml"
GOOD = "```python\n# file: solution.py\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
FIX_MARK = "failed in the TEST phase"

INVENTORY = parse_inventory({
    "endpoints": {"e1": {"backend": "openai", "base_url": "http://127.0.0.1:9"},
                  "e2": {"backend": "openai", "base_url": "http://127.0.0.1:10"}},
    "models": [{"name": "small", "rank": 1, "timeout_s": 30, "endpoint": "e1", "mode": "chat"},
               {"name": "medium", "rank": 2, "timeout_s": 30, "endpoint": "e1", "mode": "chat"},
               {"name": "large", "rank": 3, "timeout_s": 30, "endpoint": "e2", "mode": "chat"}],
    "routes": {"Python/General": {"start": "small", "escalation": ["medium", "large"]},
               "Tests/Docs": {"start": "large", "escalation": []}},
}, "queue test inventory")  # fmt: skip


class DeterministicModel:
    """Answers as a pure function of the request, so a restarted process answers alike.

    ``wrong_first``: a first prompt gets a wrong answer, a later try (a fix prompt or a
    fresh sample) the right one.
    Every call is appended to ``log`` (one request key per line) before it answers.
    """

    def __init__(self, log: Path | None = None, *, wrong_first: bool = True, delay_s: float = 0.0,
                 fail: Exception | None = None) -> None:  # fmt: skip
        self.log = log
        self.wrong_first = wrong_first
        self.delay_s = delay_s
        self.fail = fail
        self.calls: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        self.calls.append(request)
        if self.log is not None:
            with open(self.log, "a", encoding="utf-8") as f:
                f.write(request_key(request) + "\n")
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        retry = request.temperature > 0 or any(FIX_MARK in m["content"] for m in request.messages)
        text = WRONG if self.wrong_first and not retry else GOOD
        if on_text:
            on_text(text)
        return Generation(text=text, model=request.model, prompt_tokens=10, completion_tokens=8, total_s=0.01)


def add_task(i: int, domain: str = "Python/General", priority: float | None = None) -> TaskSpec:
    return replace(load_task(ADD_SPEC, INVENTORY.domains), id=f"add-{i}", domain=domain, priority=priority)


def submissions(n: int, **kw) -> list[Submission]:
    return [submission_for(add_task(i), key_space="t", **kw) for i in range(n)]


def make_runner(queue: QueueStore, learning: LearningStore, model, workspaces: Path, *,
                ordering: Ordering | None = None, config: OptimizationConfig | None = None,
                **settings) -> QueueRunner:  # fmt: skip
    cfg = config or OptimizationConfig()
    base = Supervisor(cfg, INVENTORY, model, learning, AttemptRunner(PhaseRunner(cfg), workspaces))
    defaults = {"workers": 2, "lease_s": 30.0, "poll_s": 0.02}
    return QueueRunner(queue, learning, derive_supervisor(base), model, lambda: ordering or Ordering(),
                       settings=RunnerSettings(**{**defaults, **settings}), inventory=INVENTORY)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
