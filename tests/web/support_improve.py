"""The dashboard seed (``support.seed``) plus what the Improvement and Alerts pages show, written through the
real stores on the same moved clock:

- feedback: ``small`` fails Python tasks five times with one error whose hint holds ``<script>``: a failure
  pattern (first seen now) and its learning, stored by the feedback loop;
- plans: one HIGH plan awaiting approval that a replay judges (``small``'s stop-loss 3 -> 2), one HIGH
  ``max_tokens`` plan awaiting approval that no replay can judge, and one LOW plan applied and kept (version 1);
- scheduled jobs: ``improvement_proposals`` succeeded, reporting two opportunities (one summary is HTML);
  ``security_scan`` failed three times in a row; ``health_profiling`` found the endpoint ``local`` silent;
- a run that ended because ``local`` refused the connection, and one that skipped ``big`` for it;
- ``big``'s health computed again after four failed runs: it drops.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kisystem.improve.auto import Validation, apply_plan
from kisystem.improve.health import HealthMonitor
from kisystem.improve.plans import (
    Opportunity,
    Plan,
    SetMaxTokens,
    SetStoploss,
    Severity,
    Strategy,
)
from kisystem.schedule.store import Outcome, ScheduleStore
from kisystem.schedule.tasks import OptimizationTask
from kisystem.store.learning import RunResult
from tests.schedule.jobs.support import CPP, PY
from tests.web.support import SCRIPT, Seeded, seed

HOSTILE_SUMMARY = "<img src=x onerror=alert(3)>"
REFUSED = ("local (http://127.0.0.1:9/v1/chat/completions) model 'small': cannot connect "
           "(All connection attempts failed)")
SILENT = "local (http://127.0.0.1:9) does not answer: local (http://127.0.0.1:9/v1/models): cannot connect (refused)"
SCAN_ERROR = "RuntimeError: bandit crashed on <b>answer</b>"


@dataclass
class Improved:
    seeded: Seeded
    plans: dict[str, int]  # replayable, unreplayable, kept -> plan id
    now: datetime  # the dashboard's clock: a minute after the last write

    @property
    def path(self) -> Path:
        return self.seeded.path


def seed_improvement(root: Path) -> Improved:
    s = seed(root)
    db = s.db
    _feedback(s)
    plans = _plans(s)
    _jobs(s)
    _unreachable(s)
    _health_drop(s)
    db.clock.advance(minutes=1)
    return Improved(s, plans, db.clock())


def _feedback(s: Seeded) -> None:
    db = s.db
    for i in range(5):
        db.feedback.record_failure("small", f"op{i}", {"error_type": "LOGIC", "rule": "py.off_by_one",
                                                       "hint": f"Check the loop bounds {SCRIPT}"},
                                   context={"domain": PY})  # fmt: skip
        db.clock.advance(seconds=10)
    db.feedback.generate_learnings(patterns=db.feedback.detect_patterns())


def _plan(opportunity: Opportunity, *changes: Any) -> Plan:
    return Plan(opportunity, Strategy.AUTO, tuple(changes), "escalate sooner", "model_seconds")


def _plans(s: Seeded) -> dict[str, int]:
    db = s.db
    decline = Opportunity("success_rate_decline", Severity.HIGH, "small", PY, {"pattern": SCRIPT})
    cut_off = Opportunity("error_pattern", Severity.HIGH, "small", PY, {})
    slow = Opportunity("performance_degradation", Severity.LOW, "big", CPP, {})

    def better(before: Any, after: Any) -> Validation:  # a validator that finds every change better
        return Validation("tasks_solved", {"solved": 1}, {"solved": 2}, True, "solved 1 -> 2")

    with db.versions() as store:
        ids = {"replayable": store.add_plan(_plan(decline, SetStoploss("small", 2)), "awaiting_approval").id,
               "unreplayable": store.add_plan(_plan(cut_off, SetMaxTokens("small", 2048)), "awaiting_approval").id}
        kept = store.add_plan(_plan(slow, SetStoploss("big", 2)))
        apply_plan(store, db.config, db.inventory, kept, better)
        ids["kept"] = kept.id
    db.clock.advance(seconds=5)
    return ids


def _task(name: str, trigger: str) -> OptimizationTask:
    return OptimizationTask(name, "test", trigger, lambda ctx: {}, f"the {name} job")


def _run(store: ScheduleStore, name: str, outcome: Outcome, seconds: float, clock: Any) -> None:
    claim = store.claim(name, "holder", 600.0, manual=True, gone=lambda holder: None)
    assert claim is not None
    clock.advance(seconds=seconds)
    store.finish(claim, outcome, clock() + timedelta(days=1))
    clock.advance(seconds=1)


def _jobs(s: Seeded) -> None:
    db = s.db
    store = ScheduleStore(db.store.guarded)
    for name, trigger in (("improvement_proposals", "continuous"), ("security_scan", "cve"),
                          ("health_profiling", "bi-weekly")):
        store.sync(_task(name, trigger))
    opportunities = [
        {"type": "quality_issues", "severity": "HIGH", "agent": "small", "domain": PY, "summary": HOSTILE_SUMMARY},
        {"type": "training_needed", "severity": "LOW", "agent": "big", "domain": CPP, "summary": "C++: too few runs"},
    ]
    _run(store, "improvement_proposals", Outcome("success", {"patterns": 1, "opportunities": opportunities}), 2.5,
         db.clock)
    _run(store, "security_scan", Outcome("success", {"scanned": 4}), 1.0, db.clock)
    for _ in range(3):
        _run(store, "security_scan", Outcome("error", error=SCAN_ERROR), 4.0, db.clock)
    models = {"small": {"reachable": False, "reason": SILENT}, "big": {"reachable": False, "reason": SILENT}}
    _run(store, "health_profiling", Outcome("success", {"reachable": 0, "unreachable": ["big", "small"],
                                                        "models": models}), 7.0, db.clock)


def _unreachable(s: Seeded) -> None:
    db = s.db
    run_id = db.store.start_run("down", PY, "small")
    db.store.append_event(run_id, "generate", {"iteration": 1, "model": "small"})
    db.clock.advance(seconds=2)
    db.store.finish_run(run_id, RunResult(model="small", iter=0, score_final=None, outcome="error",
                                          reason=f"BackendUnreachable: {REFUSED}"))
    skipped = db.store.start_run("skipping", CPP, "big")
    db.store.append_event(skipped, "skip", {"iteration": 1, "model": "big", "reason": REFUSED.replace("small", "big")})
    db.store.append_event(skipped, "skip", {"iteration": 2, "model": "big", "reason": "model 'big' not found at x"})
    db.clock.advance(seconds=2)
    db.store.finish_run(skipped, RunResult(model="big", iter=0, score_final=None, outcome="exhausted"))


def _health_drop(s: Seeded) -> None:
    db = s.db
    for i in range(4):
        run_id = db.store.start_run(f"hard{i}", CPP, "big")
        db.store.append_event(run_id, "score", {"iteration": 1, "model": "big", "score": 0.0, "error": "LOGIC"})
        db.clock.advance(seconds=30)
        db.store.finish_run(run_id, RunResult(model="big", iter=1, score_final=0.0, outcome="failed"))
    HealthMonitor(db.store, db.config, db.inventory, db.feedback, clock=db.clock).compute("big")
