"""The guide's "Phase 7 goals" table (seed B, "Success Metrics"), each figure beside its target.

| Metric                   | Target  | How to measure        | computed here as                                    |
|--------------------------|---------|-----------------------|-----------------------------------------------------|
| Model Selection Accuracy | >70%    | Meta-Bias hit rate    | the meta-supervisor's replayed bias hit rate         |
| Profiling Time Reduction | 40-55%  | Two-Tier stats        | profiling time saved against always profiling fully  |
| Task Efficiency          | +30%    | Cost-Aware ROI        | weighted flow time of FIFO over the recorded order   |
| Error Recovery           | +25%    | Stop-Loss vs Phase 6  | share of runs escalated after a failure then solved  |
| Learning Speed           | Better recency | Exponential aging | not a measurement: the bias weights decay by design |

Error recovery against Phase 6: Phase 6 had no stop-loss escalation, so a run escalated after its
model failed would have ended failed there; the share of those runs that were solved is what the
escalation recovered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kisystem.stats.common import no_data

MET, NOT_MET, ABOVE_RANGE, NO_DATA, NOT_MEASURED = "met", "not met", "above range", "no data", "not measured"


@dataclass(frozen=True)
class Target:
    """``low`` (exclusive when ``strict``) and, for a range, ``high``."""

    text: str
    low: float
    high: float | None = None
    strict: bool = False

    def status(self, value: float | None) -> str:
        if value is None:
            return NO_DATA
        if value < self.low or (self.strict and value == self.low):
            return NOT_MET
        return ABOVE_RANGE if self.high is not None and value > self.high else MET


@dataclass(frozen=True)
class Goal:
    metric: str
    target: str
    how: str  # the guide's "How to Measure"
    value: float | None
    shown: str  # the value as the table shows it, or why there is none
    status: str
    basis: str  # what exactly was computed

    def to_dict(self) -> dict[str, Any]:
        data = {"metric": self.metric, "target": self.target, "how": self.how, "value": self.value,
                "status": self.status, "basis": self.basis}
        if self.status == NO_DATA:
            data["no_data"] = self.shown
        return data


SELECTION = Target(">70%", 0.70, strict=True)
PROFILING = Target("40-55%", 0.40, 0.55)
EFFICIENCY = Target("+30%", 0.30)
RECOVERY = Target("+25%", 0.25)

SELECTION_NEEDS = ("runs started on a recommended model: a model is recommended after 5 runs of a domain "
                   "at a weighted success of 0.65")  # fmt: skip
RECOVERY_NEEDS = "runs escalated to another model after a failed iteration"


def _goal(metric: str, target: Target, how: str, value: float | None, shown: str, needs: str,
          basis: str) -> Goal:  # fmt: skip
    return Goal(metric, target.text, how, value, shown if value is not None else no_data(needs),
                target.status(value), basis)


def selection_goal(meta: dict[str, Any]) -> Goal:
    b = meta["bias"]
    rate = meta["bias_hit_rate"]
    shown = f"{_pct(rate)} ({b['hits']} of {b['followed']} runs)" if rate is not None else ""
    return _goal("Model Selection Accuracy", SELECTION, "Meta-Bias hit rate", rate, shown, SELECTION_NEEDS,
                 "runs started on the model the bias recommended then, solved by it (all history, replayed)")


def profiling_goal(ratio: float | None, saved_s: float, always_full_s: float, needs: str) -> Goal:
    shown = f"{_pct(ratio)} ({saved_s:.1f} of {always_full_s:.1f} s)" if ratio is not None else ""
    return _goal("Profiling Time Reduction", PROFILING, "Two-Tier stats", ratio, shown, needs,
                 "profiling time saved against always profiling fully (estimated per run)")


def efficiency_goal(gain: float | None, tasks: int, workers: int, basis: str, needs: str) -> Goal:
    shown = f"{gain:+.0%} ({tasks} tasks, {workers} worker{'s' if workers != 1 else ''})" if gain is not None else ""
    return _goal("Task Efficiency", EFFICIENCY, "Cost-Aware ROI", gain, shown, needs,
                 f"flow time under FIFO over the queue's recorded order, minus 1 ({basis})")


def recovery_goal(rate: float | None, recovered: int, escalated: int) -> Goal:
    shown = f"{_pct(rate)} ({recovered} of {escalated} runs)" if rate is not None else ""
    return _goal("Error Recovery", RECOVERY, "Stop-Loss vs Phase 6", rate, shown, RECOVERY_NEEDS,
                 "runs escalated after a failed iteration that were then solved (Phase 6 would have failed them)")


def learning_goal() -> Goal:
    return Goal("Learning Speed", "Better recency", "Exponential aging", None,
                "by design: run weights decay as exp(-age / 30 d)", NOT_MEASURED,
                "a property of the model-bias weighting, not a figure of the database")


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"
