"""A learning database the stats tests fill by hand: runs with their events as the loop writes them,
and queued tasks moved through their states at chosen times, all on one clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from kisystem.store.learning import LearningStore, RunRecord, RunResult
from kisystem.store.queue import QueueStore, Submission

PY, CPP, DSP, CUDA, DOCS = "Python/General", "C++/System", "Audio/DSP", "CUDA/Kernel", "Tests/Docs"
T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    """Now, moved by the tests; ``at(s)`` puts it ``s`` seconds after ``start``."""

    start: datetime = T0

    def __post_init__(self) -> None:
        self.now = self.start

    def __call__(self) -> datetime:
        return self.now

    def unix(self) -> float:
        return self.now.timestamp()

    def at(self, seconds: float) -> None:
        self.now = self.start + timedelta(seconds=seconds)


@dataclass(frozen=True)
class Step:
    """One iteration: the model asked, and how it ended.

    ``end``: "ok" (scored at target), "fail" (scored, failed), "skip" (the backend lacked the model:
    no answer, no score); ``escalate_to``: the model the loop moved on to after this iteration."""

    model: str
    end: str = "fail"
    gen_s: float = 10.0
    escalate_to: str | None = None
    profile: dict[str, Any] | None = None


@dataclass
class Db:
    path: Path
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.store = LearningStore.open(self.path, clock=self.clock)
        self.queue = QueueStore.open(self.path, clock=self.clock.unix)

    def close(self) -> None:
        self.store.close()
        self.queue.close()

    def run(self, steps: list[Step], outcome: str, domain: str = PY, finish: bool = True) -> str:
        """A run through ``steps`` with the events the supervisor appends; ends as ``outcome``."""
        run_id = self.store.start_run("task", domain, steps[0].model)
        for i, s in enumerate(steps, 1):
            emit = partial(self._emit, run_id, i, s.model)
            emit("generate", temperature=0.0)
            if s.end == "skip":
                emit("skip", reason="model not found")
            else:
                self.clock.now += timedelta(seconds=s.gen_s)
                emit("answer", prompt_tokens=10, completion_tokens=5, seconds=s.gen_s)
                emit("test", ok=s.end == "ok", seconds=1.0)
                if s.profile is not None:
                    emit("profile", **s.profile)
                emit("score", score=100.0 if s.end == "ok" else 0.0, error=None if s.end == "ok" else "LOGIC")
            if s.escalate_to:
                self.store.append_event(run_id, "escalate", {"iteration": i, "model": s.escalate_to,
                                                             "previous": s.model})
        if finish:
            tried = tuple(dict.fromkeys(s.model for s in steps if s.end != "skip"))
            ended_on = next(s.model for s in reversed(steps) if s.end != "skip")
            self.store.finish_run(run_id, RunResult(ended_on, len(steps), None, outcome,  # type: ignore[arg-type]
                                                    models_tried=tried))
        self.clock.now += timedelta(minutes=1)
        return run_id

    def _emit(self, run_id: str, iteration: int, model: str, kind: str, **data: Any) -> None:
        self.store.append_event(run_id, kind, {"iteration": iteration, "model": model, **data})

    def imported(self, run_id: str, domain: str, model: str, outcome: str, start: datetime, wall_s: float,
                 tried: tuple[str, ...] = ()) -> None:
        """A finished run without events (imported history), started at ``start``, ``wall_s`` long."""
        self.store.import_runs([RunRecord(
            run_id, "task", domain, model, 1, None, outcome, None, None, 0.0, 0.0, 0.0, start,  # type: ignore[arg-type]
            start + timedelta(seconds=wall_s), 0, 0, None, tried or (model,), wall_s, None)])  # fmt: skip

    # -- the queue ---------------------------------------------------------------------

    def add(self, name: str, priority: float | None = None, domain: str = PY) -> int:
        (added,) = self.queue.add([Submission(f"id = '{name}'", name, domain, f"k:{name}", priority=priority)])
        return added.id

    def claim(self, task_id: int, holder: str = "w1") -> None:
        claim = self.queue.claim(holder, 600.0, lambda cands: next(c for c in cands if c.id == task_id))
        assert claim is not None and claim.id == task_id
        assert self.queue.start(task_id, holder)

    def attach(self, task_id: int, run_id: str, holder: str = "w1") -> None:
        assert self.queue.attach_run(task_id, holder, run_id)

    def finish(self, task_id: int, state: str = "succeeded", holder: str = "w1") -> None:
        assert self.queue.finish(task_id, holder, state, "success" if state == "succeeded" else state, None, None)


# -- scenarios shared by the tests (figures worked out by hand in each test) ---------------


def fill(db: Db) -> None:
    """Python: R1 small fails twice, stop-loss to big, big solves; R2 small is missing (skip), big solves;
    R3 small fails twice, stop-loss to big, big fails twice: exhausted; R4 small solves.
    C++: R5 big alone fails twice: exhausted (its stop-loss fires on the last model); R6 imported, no events."""
    db.run([Step("small", gen_s=10), Step("small", gen_s=12, escalate_to="big"), Step("big", "ok", gen_s=30)],
           "success")
    db.run([Step("small", "skip", escalate_to="big"), Step("big", "ok", gen_s=20)], "success")
    db.run([Step("small", gen_s=8), Step("small", gen_s=9, escalate_to="big"), Step("big", gen_s=25),
            Step("big", gen_s=35)], "exhausted")
    db.run([Step("small", "ok", gen_s=5)], "success")
    db.run([Step("big", gen_s=40), Step("big", gen_s=50)], "exhausted", domain=CPP)
    db.imported("imported-1", CPP, "big", "success", db.clock.start - timedelta(hours=1), 30.0)
    # in flight: left out, escalation and all
    db.run([Step("small", gen_s=1, escalate_to="big")], "running", finish=False)


def guide_queue(db: Db) -> None:
    """The guide's example (seed B, section 5) on one worker: A (priority 90, 300 s), B (80, 180 s),
    C (95, 900 s) queued at once; the queue ran B, A, C as PriorityEff ranks them.  D comes later, never leased."""
    base = db.clock.now
    a, b, c = db.add("A", 90.0, DSP), db.add("B", 80.0, CPP), db.add("C", 95.0, CUDA)
    for task, claimed, held, state in ((b, 10, 180, "succeeded"), (a, 190, 300, "succeeded"), (c, 490, 900, "failed")):
        db.clock.now = base + timedelta(seconds=claimed)
        db.claim(task)
        db.clock.now = base + timedelta(seconds=claimed + held)
        db.finish(task, state)
    db.clock.now = base + timedelta(seconds=1500)
    db.add("D", 50.0, PY)


def bias_history(db: Db) -> None:
    """Five solved runs of small make it the recommended start model of Audio/DSP; then run 6 starts on it and
    it solves (a hit), run 7 starts on it and big solves (followed, no hit), run 8 starts on big (ignored)."""
    for i in range(5):
        db.imported(f"h{i}", DSP, "small", "success", db.clock.start - timedelta(hours=10 - i), 60.0)
    db.imported("r6", DSP, "small", "success", db.clock.start - timedelta(hours=4), 60.0)
    db.imported("r7", DSP, "big", "success", db.clock.start - timedelta(hours=3), 60.0, tried=("small", "big"))
    db.imported("r8", DSP, "big", "success", db.clock.start - timedelta(hours=2), 60.0, tried=("big",))


def profiled_run(db: Db) -> None:
    """Iteration 1 profiled fully (tier 0 2 s + tier 1 10 s), iterations 2 and 3 by tier 0 alone (2 s each):
    12 + 2 + 2 = 16 s spent; always full would be 3 x 12 = 36 s; saved 20 / 36."""
    full = {"tier": 1, "tier0_s": 2.0, "tier1_s": 10.0, "regression": False}
    quick = {"tier": 0, "tier0_s": 2.0, "tier1_s": 0.0, "regression": False}
    db.run([Step("small", "fail", profile=full), Step("small", "fail", profile=quick),
            Step("small", "ok", profile=quick)], "success")
