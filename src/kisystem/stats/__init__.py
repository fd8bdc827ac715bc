"""Seed B's success metrics, computed from the learning database (read only).

``get_escalation_stats`` (escalations, stop-loss triggers and model effectiveness per domain),
``get_efficiency`` (the queue's wait, throughput, ROI accuracy and its order against FIFO), the
two-tier profiler's time savings and the meta-supervisor's statistics, and the guide's "Phase 7
goals" table built from them (:func:`collect`).  ``kisystem stats`` prints them; every figure
without data says what it needs instead of showing 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kisystem.config import OptimizationConfig
from kisystem.loop.profiling import TimeSavings
from kisystem.routing.meta import MetaSupervisor
from kisystem.stats import goals
from kisystem.stats.common import Window, no_data
from kisystem.stats.efficiency import FIFO_NEEDS, QueueEfficiency, get_efficiency
from kisystem.stats.escalation import EscalationStats, get_escalation_stats
from kisystem.stats.profiling import SAVINGS_NEED, profile_savings, saved_ratio
from kisystem.store.learning import LearningStore

__all__ = ["StatsReport", "Window", "collect", "get_efficiency", "get_escalation_stats", "no_data"]


@dataclass(frozen=True)
class StatsReport:
    window: Window
    meta: dict[str, Any]
    profiling: TimeSavings
    escalation: EscalationStats
    efficiency: QueueEfficiency
    goals: tuple[goals.Goal, ...]

    def to_dict(self) -> dict[str, Any]:
        profiling = self.profiling.to_dict()
        if saved_ratio(self.profiling) is None:
            profiling["no_data"] = no_data(SAVINGS_NEED)
        return {"window": self.window.to_dict(), "goals": [g.to_dict() for g in self.goals],
                "escalation": self.escalation.to_dict(), "efficiency": self.efficiency.to_dict(),
                "profiling": profiling, "meta": {**self.meta, "window": "all history (a replay of every run)"}}


def collect(store: LearningStore, window: Window, config: OptimizationConfig | None = None) -> StatsReport:
    """Every figure of ``kisystem stats`` over ``window`` (the meta-supervisor's replay reads all history)."""
    meta = MetaSupervisor(store, config, clock=lambda: window.now).get_statistics()
    savings = profile_savings(store, window)
    escalation = get_escalation_stats(store, window)
    efficiency = get_efficiency(store, window)
    fifo = efficiency.fifo
    table = (
        goals.selection_goal(meta),
        goals.profiling_goal(saved_ratio(savings), savings.saved_s, savings.always_full_s, SAVINGS_NEED),
        goals.efficiency_goal(fifo.gain if fifo else None, fifo.tasks if fifo else 0, fifo.workers if fifo else 0,
                              fifo.basis if fifo else "", FIFO_NEEDS),
        goals.recovery_goal(escalation.recovery_rate, escalation.total("recovered"),
                            escalation.total("escalated_runs")),
        goals.learning_goal(),
    )  # fmt: skip
    return StatsReport(window, meta, savings, escalation, efficiency, table)
