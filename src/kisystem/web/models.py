"""What the Models page shows: per model and per (model, domain) runs, success, latency, tokens/s, health.

- Runs and success rate are the meta-supervisor's evidence (``domain_model_agg``, DESIGN decision 2):
  a run counts for every model it tried, as a success only for the model that solved it, so a model
  that always fails and escalates is visible, and the numbers agree with the model bias and the health
  score.  The caller reads them through :class:`~kisystem.routing.meta.MetaSupervisor`.
- Latency and tokens/s come from the loop's ``answer`` events, folded forward per (model, domain) by
  the dashboard's :class:`~kisystem.web.answers.AnswerFold` (the one ``/metrics`` reads), so a page reads only the
  events written since the last one.
- Health is what :class:`~kisystem.improve.health.HealthMonitor` stored in ``health_history``: the newest
  score of each agent, its last few scores of the same window, and the trend the monitor gave it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kisystem.store.learning import ModelEvidence
from kisystem.store.times import iso
from kisystem.web.answers import AnswerSums
from kisystem.web.backends import Loaded
from kisystem.web.db import DashboardDb
from kisystem.web.multichart import multi_chart

HEALTH_SHOWN = 5  # the last scores shown beside the newest
HEALTH_CHART_ROWS = 500  # the newest health rows charted
CHART_DAYS = 30
CHART_RUNS = 5000  # the newest finished runs the success chart reads, at most
DAY = timedelta(days=1)
DIRECTIONS = {"improving": "up", "declining": "down", "stable": "flat"}

_LATEST_HEALTH = """
SELECT agent, days, score, trend, ts FROM health_history
WHERE id IN (SELECT MAX(id) FROM health_history GROUP BY agent) ORDER BY agent
"""

# The newest runs first, from the ts index (outcome is in it): only the rows kept are read for their model.
_DAILY_SUCCESS = """
SELECT substr(ts, 1, 10) AS day, model, COUNT(*), SUM(outcome = 'success') FROM (
    SELECT ts, model, outcome FROM runs WHERE ts >= ? AND outcome != 'running' ORDER BY ts DESC LIMIT ?
) GROUP BY day, model
"""


@dataclass(frozen=True)
class Usage:
    """Runs that tried a model (and how many it solved), and its timed answers."""

    runs: int = 0
    successes: int = 0
    answers: AnswerSums = field(default_factory=AnswerSums)

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.runs if self.runs else None

    @property
    def mean_latency_s(self) -> float | None:
        """Generation seconds per answer."""
        return self.answers.seconds / self.answers.answers if self.answers.answers else None

    @property
    def tokens_per_s(self) -> float | None:
        """Completion tokens per generation second."""
        return self.answers.tokens / self.answers.token_seconds if self.answers.token_seconds > 0 else None

    def plus(self, other: Usage) -> Usage:
        return Usage(self.runs + other.runs, self.successes + other.successes, self.answers.plus(other.answers))


@dataclass(frozen=True)
class HealthTrend:
    """An agent's newest stored health score, the scores of the same window before it, the monitor's trend."""

    agent: str
    days: int
    score: float
    trend: str  # improving / stable / declining, as HealthMonitor stored it
    ts: str
    recent: tuple[float, ...]  # oldest first, the newest score last

    @property
    def direction(self) -> str:
        return DIRECTIONS.get(self.trend, "flat")


@dataclass(frozen=True)
class DomainRow:
    domain: str
    usage: Usage


@dataclass(frozen=True)
class ModelRow:
    """One model on the page: its totals, its domains, its health and its state on its backend."""

    model: str
    usage: Usage
    domains: tuple[DomainRow, ...]
    health: HealthTrend | None
    loaded: Loaded


def usage_by_pair(evidence: Iterable[ModelEvidence],
                  answers: Mapping[tuple[str, str], AnswerSums]) -> dict[tuple[str, str], Usage]:  # fmt: skip
    """Usage per (model, domain), from the meta-supervisor's evidence and the answer fold."""
    runs = {(e.model, e.domain): (e.runs, e.successes) for e in evidence}
    return {key: Usage(*runs.get(key, (0, 0)), answers.get(key, AnswerSums())) for key in runs.keys() | answers.keys()}


def health_trends(db: DashboardDb, shown: int = HEALTH_SHOWN) -> dict[str, HealthTrend]:
    """The newest stored health of every agent with its last ``shown`` scores; {} without health history."""
    if not db.has("health_history"):
        return {}
    out = {}
    for r in db.rows(_LATEST_HEALTH):
        scores = db.rows("SELECT score FROM health_history WHERE agent = ? AND days = ? ORDER BY id DESC LIMIT ?",
                         (r["agent"], r["days"], shown))  # fmt: skip
        out[r["agent"]] = HealthTrend(r["agent"], r["days"], r["score"], r["trend"], r["ts"],
                                      tuple(s[0] for s in reversed(scores)))  # fmt: skip
    return out


def model_rows(usage: Mapping[tuple[str, str], Usage], health: Mapping[str, HealthTrend],
               loaded: Mapping[str, Loaded]) -> list[ModelRow]:  # fmt: skip
    """Every model that ran, answered, has a health score or is in the inventory, by name."""
    by_model: dict[str, list[DomainRow]] = defaultdict(list)
    for (model, domain), u in sorted(usage.items()):
        by_model[model].append(DomainRow(domain, u))
    rows = []
    for model in sorted(by_model.keys() | health.keys() | loaded.keys()):
        domains = tuple(by_model.get(model, ()))
        total = Usage()
        for d in domains:
            total = total.plus(d.usage)
        rows.append(ModelRow(model, total, domains, health.get(model), loaded.get(model) or Loaded(model, "unknown")))
    return rows


def health_chart(db: DashboardDb, trends: Mapping[str, HealthTrend], rows: int = HEALTH_CHART_ROWS) -> dict[str, Any]:
    """Health score over time per agent (the newest ``rows`` rows, each agent's newest window only)."""
    lines: dict[str, dict[float, float | None]] = {}
    if trends:
        found = db.rows("SELECT agent, days, score, ts FROM health_history ORDER BY id DESC LIMIT ?", (rows,))
        for r in found:
            t = trends.get(r["agent"])
            if t is not None and r["days"] == t.days:
                lines.setdefault(r["agent"], {})[_unix(r["ts"])] = round(r["score"], 2)
    return multi_chart(lines, y_label="health score", y_max=100)


def success_chart(db: DashboardDb, now: datetime, days: int = CHART_DAYS, runs: int = CHART_RUNS) -> dict[str, Any]:
    """Success rate (%) per UTC day (by start) of the runs each model ended on, over the last ``days`` days
    (the newest ``runs`` finished runs of them at most)."""
    first = (now.astimezone(UTC) - (days - 1) * DAY).replace(hour=0, minute=0, second=0, microsecond=0)
    lines: dict[str, dict[float, float | None]] = {}
    for day, model, n, solved in db.rows(_DAILY_SUCCESS, (iso(first), runs)):
        midnight = datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()
        lines.setdefault(model, {})[midnight] = round(100.0 * solved / n, 1)
    return multi_chart(lines, y_label="success %", y_max=100)


def _unix(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()
