"""A learning database seeded as the loop writes it, and the dashboard over it on the same moved clock.

The seed (clock at T0 = 2025-06-02 12:00 UTC, then moved on):
- ``old``: a success of ``big`` three days before T0 (counts in "all", not in "last 24 h");
- ``solved``: task ``add``, iteration 1 on ``small`` fails its test (LOGIC, with hint and excerpt; its
  code holds ``<script>alert(1)</script>``), escalation to ``big``, iteration 2 passes: success;
- ``failed``: a C++ task whose id is HTML (``<img src=x onerror=alert(2)>``), a COMPILATION failure;
- ``running``: task ``long`` on ``small``, still running (one ``generate`` event);
- the queue: one task queued, one leased, one cancelled; health history for ``small`` and ``big``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from kisystem.improve.health import HealthMonitor
from kisystem.store.learning import LearningStore, RunResult
from kisystem.store.queue import QueueStore, Submission
from kisystem.web.app import create_app
from kisystem.web.db import DashboardDb
from kisystem.web.events import Stream
from tests.schedule.jobs.support import CPP, PY, T0, Db

SCRIPT = "<script>alert(1)</script>"
HOSTILE_TASK = "<img src=x onerror=alert(2)>"
BAD_CODE = f"def add(a, b):\n    return a - b  # {SCRIPT}\n"
GOOD_CODE = "def add(a, b):\n    return a + b\n"
TEST_ERROR = {"error_type": "LOGIC", "phase": "TEST", "severity": 2, "recoverable": True,
              "hint": "The tests failed; see the excerpt", "rule": "fallback.test",
              "excerpt": "AssertionError: add(1, 2) returned -1 <b>bold</b>", "signature": "s", "transient": False}
BUILD_ERROR = {**TEST_ERROR, "error_type": "COMPILATION", "phase": "BUILD", "hint": "Fix the syntax error",
               "excerpt": "main.cpp:3: error: expected ';'"}
FAST = Stream(poll_s=0.02, lifetime_s=5.0)
NOW = T0 + timedelta(minutes=30)  # the dashboard's clock


@dataclass
class Seeded:
    db: Db
    ids: dict[str, str]

    @property
    def path(self) -> Path:
        return self.db.path


class Writer:
    """Runs written through the real LearningStore, event by event, as the loop logs them."""

    def __init__(self, db: Db) -> None:
        self.db = db
        self.store: LearningStore = db.store

    def iteration(self, run_id: str, i: int, model: str, code: str, phase: str, error: dict | None,
                  gen_s: float, tokens: int) -> None:
        def emit(kind: str, **data: Any) -> None:
            self.store.append_event(run_id, kind, {"iteration": i, "model": model, **data})

        emit("generate", temperature=0.0)
        self.db.clock.advance(seconds=gen_s)
        emit("answer", prompt_tokens=200, completion_tokens=tokens, max_tokens=1024, finish_reason="stop",
             seconds=gen_s)
        emit("code", language="python", file="solution.py", code=code)
        emit(phase, ok=error is None, seconds=1.5, attempts=1, error=error)
        emit("score", score=0.0 if error else 100.0, error=error["error_type"] if error else None)

    def finish(self, run_id: str, model: str, outcome: str, iters: int, tried: tuple[str, ...] = ()) -> None:
        self.store.finish_run(run_id, RunResult(model=model, iter=iters, score_final=100.0 if outcome == "success"
                                                else 0.0, outcome=outcome, models_tried=tried or (model,)))


def seed(root: Path) -> Seeded:
    db = Db(root)
    w, ids = Writer(db), {}
    db.clock.now = T0 - timedelta(days=3)
    ids["old"] = db.store.start_run("old-task", PY, "big")
    w.iteration(ids["old"], 1, "big", GOOD_CODE, "test", None, 8.0, 50)
    w.finish(ids["old"], "big", "success", 1)
    db.clock.now = T0
    ids["solved"] = db.store.start_run("add", PY, "small")
    w.iteration(ids["solved"], 1, "small", BAD_CODE, "test", TEST_ERROR, 4.0, 100)
    db.store.append_event(ids["solved"], "escalate", {"iteration": 1, "model": "big", "previous": "small"})
    w.iteration(ids["solved"], 2, "big", GOOD_CODE, "test", None, 12.0, 300)
    w.finish(ids["solved"], "big", "success", 2, ("small", "big"))
    db.clock.advance(minutes=5)
    ids["failed"] = db.store.start_run(HOSTILE_TASK, CPP, "big")
    w.iteration(ids["failed"], 1, "big", "int main() { return 0 }", "build", BUILD_ERROR, 30.0, 700)
    w.finish(ids["failed"], "big", "failed", 1)
    db.clock.advance(minutes=5)
    ids["running"] = db.store.start_run("long", PY, "small")
    db.store.append_event(ids["running"], "generate", {"iteration": 1, "model": "small"})
    _queue(db)
    monitor = HealthMonitor(db.store, db.config, db.inventory, db.feedback, clock=db.clock)
    for agent in ("small", "big"):
        monitor.compute(agent)
    db.clock.advance(minutes=1)
    return Seeded(db, ids)


def _queue(db: Db) -> None:
    with QueueStore.open(db.path, clock=lambda: db.clock().timestamp()) as queue:
        added = queue.add([Submission("id = 't'", f"q{i}", PY, f"key{i}") for i in range(3)])
        queue.cancel(added[2].id)
        queue.claim("holder", 60.0, lambda candidates: candidates[0])


@contextmanager
def client(path: Path, clock=None, **options: Any) -> Iterator[TestClient]:
    """A TestClient over a read-only dashboard of ``path``."""
    dash = DashboardDb.open(path)
    try:
        app = create_app(dash, clock=clock or (lambda: NOW), **{"stream": FAST, **options})
        with TestClient(app) as c:
            yield c
    finally:
        dash.close()
