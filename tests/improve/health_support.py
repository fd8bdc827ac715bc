"""A learning database the health and opportunity tests fill run by run, on a clock they move."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kisystem.config import OptimizationConfig
from kisystem.improve.feedback import FeedbackLoop
from kisystem.improve.health import HealthMonitor
from kisystem.models.inventory import Inventory
from kisystem.store.learning import LearningStore, RunResult
from tests.improve.fleet_support import CPP, PY, fleet_toml, parse_fleet

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
SMALL = "small:1.5b"
FLEET = fleet_toml({SMALL: 60, "big": 120}, {PY: (SMALL, "big"), CPP: ("big",)}, backend="ollama")


def fleet() -> Inventory:
    """small:1.5b (timeout 60 s, SLA 30 s) -> big (120 s) on Python; big alone on C++."""
    return parse_fleet(FLEET)


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class Db:
    """A store, its feedback loop and a health monitor, all on one moved clock."""

    path: Path
    config: OptimizationConfig = field(default_factory=OptimizationConfig)
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.store = LearningStore.open(self.path, clock=self.clock)
        self.feedback = FeedbackLoop(self.store, self.config.feedback, clock=self.clock)
        self.monitor = HealthMonitor(self.store, self.config, fleet(), self.feedback, clock=self.clock)

    def close(self) -> None:
        self.store.close()

    def run(self, model: str, outcome: str = "success", iterations: tuple[tuple, ...] = ((10.0, False),),
            tried: tuple[str, ...] = (), domain: str = PY, build_s: float | None = None,
            answered: bool = False) -> str:
        """A finished run ending on ``model``: per iteration (generation seconds, ended with an error[, the
        model asked, default ``model``]), the clock moving on by the generation time (and a build of
        ``build_s`` after it); ``answered``: each generation also logs its ``answer`` event, as the loop does now."""
        run_id = self.store.start_run("t", domain, tried[0] if tried else model)
        for i, it in enumerate(iterations, 1):
            gen_s, error, asked = (*it, model)[:3]
            self.store.append_event(run_id, "generate", {"iteration": i, "model": asked})
            self.clock.advance(seconds=gen_s)
            if answered:
                self.store.append_event(run_id, "answer", {"iteration": i, "model": asked, "seconds": gen_s})
            self.clock.advance(seconds=build_s or 0.0)
            if build_s is not None:
                self.store.append_event(run_id, "build", {"iteration": i, "model": asked, "ok": True,
                                                          "seconds": build_s})
            self.store.append_event(run_id, "score", {"iteration": i, "model": asked, "score": 0.0 if error else 100.0,
                                                      "error": "LOGIC" if error else None})
        self.store.finish_run(run_id, RunResult(model=model, iter=len(iterations), score_final=None,
                                                outcome=outcome, models_tried=tried))  # type: ignore[arg-type]
        self.clock.advance(seconds=1)
        return run_id

    def quality(self, model: str, score: float, source: str = "guardian", domain: str = PY) -> None:
        self.feedback.record_quality_score(model, "op", score, source=source, context={"domain": domain})
