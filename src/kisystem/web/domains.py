"""What the Domains page shows: the meta-supervisor's priorities with their four terms, model bias, learning curve.

Priorities and bias are computed by :class:`~kisystem.routing.meta.MetaSupervisor` itself (the code
``kisystem meta priorities / explain / bias`` prints), over its own read-only connection: the page shows
the numbers routing and the queue use, never a copy of the formula.  A database from before the
aggregates (schema < 3) is read by the supervisor's full-scan reference instead.

The learning curve is each domain's success rate over its last :data:`CURVE_WINDOW` finished runs at
each run number (its finished runs in start order), over its newest :data:`CURVE_RUNS` runs, thinned to
at most :data:`CURVE_POINTS` points: a few thousand index reads per domain however long the history.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from kisystem.config import OptimizationConfig
from kisystem.routing.meta import (
    BIAS_MIN_RATE,
    BIAS_MIN_RUNS,
    MetaSupervisor,
    best_models,
    explain,
)
from kisystem.store import db as store_db
from kisystem.store.learning import Clock, LearningStore, ModelEvidence
from kisystem.web.db import DashboardDb
from kisystem.web.multichart import multi_chart

CURVE_WINDOW = 10
CURVE_POINTS = 200
CURVE_RUNS = 2000
FACTORS: tuple[str, ...] = ("failure_contribution", "time_contribution", "count_contribution", "recency_boost")

# The newest first: the (domain, ts) index in reverse, no sort (rowid is the index's last column).
_NEWEST = """
SELECT outcome = 'success' FROM runs WHERE domain = ? AND outcome != 'running' ORDER BY ts DESC, rowid DESC LIMIT ?
"""


@dataclass(frozen=True)
class DomainPriority:
    """One domain's P(d), its four weighted terms and their inputs (``MetaSupervisor.explain_priority``)."""

    domain: str
    priority: float
    factors: dict[str, float]
    success_rate: float
    avg_time: float | None
    run_count: int
    recency: float


@dataclass(frozen=True)
class Bias:
    """What one domain's finished runs say about one model, and whether the bias gate picks it."""

    evidence: ModelEvidence
    recommended: bool

    @property
    def missing(self) -> str:
        """Why the gate does not pass yet ("" when it does)."""
        e, parts = self.evidence, []
        if e.runs < BIAS_MIN_RUNS:
            parts.append(f"{BIAS_MIN_RUNS - e.runs} more runs")
        if e.weighted_success_rate < BIAS_MIN_RATE:
            parts.append(f"weighted success {e.weighted_success_rate:.2f} < {BIAS_MIN_RATE:.2f}")
        return ", ".join(parts)


@contextmanager
def meta_supervisor(db: DashboardDb, clock: Clock,
                    config: OptimizationConfig | None = None) -> Iterator[MetaSupervisor]:  # fmt: skip
    """The meta-supervisor over a read-only connection of its own (closed on exit)."""
    conn = store_db.connect_read_only(db.path)
    try:
        conn.execute("PRAGMA query_only = ON")
        store = LearningStore(conn, db.path, clock)
    except BaseException:
        conn.close()
        raise
    try:
        yield MetaSupervisor(store, config, clock, full_scan=not db.has("domain_model_agg"))
    finally:
        store.close()


def priorities(meta: MetaSupervisor) -> list[DomainPriority]:
    """Every domain with finished runs, highest priority first (ties by name, as ``next_priorities`` ranks)."""
    out = []
    for inputs in meta.domain_inputs():
        e = explain(inputs, meta.weights)
        out.append(DomainPriority(inputs.domain, e["priority_score"], e["factors"], e["success_rate"],
                                  e["avg_time"], e["run_count"], inputs.recency))  # fmt: skip
    return sorted(out, key=lambda p: (-p.priority, p.domain))


def model_bias(meta: MetaSupervisor) -> dict[str, list[Bias]]:
    """Per domain, the models its runs tried, best weighted success first; the one the gate picks marked.

    Marked whether or not the supervisor is enabled (``best_models``: what it would recommend).
    """
    evidence = meta.evidence()
    chosen = best_models(evidence)
    out: dict[str, list[Bias]] = {}
    for e in sorted(evidence, key=lambda e: (e.domain, -e.weighted_success_rate, -e.runs, e.model)):
        out.setdefault(e.domain, []).append(Bias(e, chosen.get(e.domain) == e.model))
    return out


def learning_curve(db: DashboardDb, totals: Mapping[str, int], *, window: int = CURVE_WINDOW,
                   runs: int = CURVE_RUNS, points: int = CURVE_POINTS) -> dict[str, Any]:  # fmt: skip
    """Success rate (%) of each domain's last ``window`` finished runs at each run number, for uPlot.

    ``totals``: each domain's finished runs (its newest is run number ``total``), as the priorities count them.
    """
    lines = {domain: _curve(db, domain, total, window, runs, points) for domain, total in totals.items()}
    return multi_chart(lines, y_label=f"success % (last {window} runs)", time=False, y_max=100)


def _curve(db: DashboardDb, domain: str, total: int, window: int, runs: int, points: int) -> dict[float, float | None]:
    solved = [bool(r[0]) for r in reversed(db.rows(_NEWEST, (domain, runs + window - 1)))]
    first = max(1, total - len(solved) + 1)  # the run number of solved[0]
    wins = list(accumulate(solved, initial=0))  # wins[i]: successes among solved[:i]
    step = math.ceil(min(total, runs) / points)
    curve: dict[float, float | None] = {}
    for i in range(len(solved)):
        n = first + i
        if (first > 1 and i < window - 1) or ((n - 1) % step and n != total):
            continue  # a window reaching past the runs read, or a point thinned out
        start = max(0, i - window + 1)
        curve[float(n)] = round(100.0 * (wins[i + 1] - wins[start]) / (i + 1 - start), 1)
    return curve
