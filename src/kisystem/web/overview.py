"""What the Overview page shows, read from the learning database.

Every read here is an index search or a small group-by: runs in flight use the partial index on
``outcome = 'running'``, time windows the index on ``runs(ts)`` (migration 12), model-seconds the
answer fold (:mod:`kisystem.web.answers`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from kisystem.store.learning import ERROR_OUTCOMES, OUTCOMES
from kisystem.store.migrations import QUEUE_STATES
from kisystem.store.times import iso
from kisystem.web.answers import AnswerFold
from kisystem.web.db import DashboardDb

DAY = timedelta(days=1)
CHART_DAYS = 30
IN_FLIGHT_SHOWN = 100

# The newest first, sorted here: an ORDER BY would have SQLite walk the whole ts index instead of
# the partial index of running rows.  CROSS JOIN keeps runs-then-events order: the window's few runs,
# then their events by run_id, never a scan of every event.
_IN_FLIGHT = """
SELECT r.run_id, r.task, r.domain, r.model, r.ts, e.kind, e.ts AS event_ts,
       json_extract(e.payload, '$.iteration') AS iteration
FROM runs r LEFT JOIN run_events e ON e.id = (SELECT MAX(id) FROM run_events WHERE run_id = r.run_id)
WHERE r.outcome = 'running'
"""

_ANSWER_SECONDS_SINCE = """
SELECT json_extract(e.payload, '$.model') AS model, SUM(json_extract(e.payload, '$.seconds')) AS seconds
FROM runs r CROSS JOIN run_events e ON e.run_id = r.run_id
WHERE r.ts >= ? AND e.kind = 'answer' GROUP BY 1
"""


@dataclass(frozen=True)
class InFlight:
    """A run still ``running``, with the newest event it logged."""

    run_id: str
    task: str
    domain: str
    model: str
    ts: str
    elapsed_s: float
    last_kind: str | None
    last_ts: str | None
    iteration: int | None


@dataclass(frozen=True)
class OutcomeCount:
    outcome: str
    last_day: int
    total: int


@dataclass(frozen=True)
class ModelSeconds:
    model: str
    last_day: float
    total: float


def outcome_counts(db: DashboardDb, now: datetime) -> list[OutcomeCount]:
    """Runs per outcome in the last 24 h (by start) and in all, every outcome listed."""
    total = {r[0]: r[1] for r in db.rows("SELECT outcome, COUNT(*) FROM runs GROUP BY outcome")}
    day = {r[0]: r[1] for r in db.rows("SELECT outcome, COUNT(*) FROM runs WHERE ts >= ? GROUP BY outcome",
                                       (iso(now - DAY),))}
    return [OutcomeCount(o, day.get(o, 0), total.get(o, 0)) for o in OUTCOMES]


def in_flight(db: DashboardDb, now: datetime) -> list[InFlight]:
    """Runs still ``running``, newest first (at most IN_FLIGHT_SHOWN)."""
    rows = sorted(db.rows(_IN_FLIGHT), key=lambda r: (r["ts"], r["run_id"]), reverse=True)[:IN_FLIGHT_SHOWN]
    return [InFlight(r["run_id"], r["task"], r["domain"], r["model"], r["ts"], _age_s(r["ts"], now),
                     r["kind"], r["event_ts"], _int(r["iteration"])) for r in rows]  # fmt: skip


def queue_depth(db: DashboardDb) -> dict[str, int] | None:
    """Queued tasks per state (every state listed); None when the database has no queue yet."""
    if not db.has("queue_tasks"):
        return None
    found = {r[0]: r[1] for r in db.rows("SELECT state, COUNT(*) FROM queue_tasks GROUP BY state")}
    return {state: found.get(state, 0) for state in QUEUE_STATES}


def model_seconds(db: DashboardDb, fold: AnswerFold, now: datetime) -> list[ModelSeconds]:
    """Generation seconds per model: in runs started in the last 24 h, and in all (the answer fold)."""
    total = {model: a.seconds.total for model, a in fold.update(db).items()}
    day = {str(r["model"] or "?"): float(r["seconds"] or 0.0)
           for r in db.rows(_ANSWER_SECONDS_SINCE, (iso(now - DAY),))}  # fmt: skip
    return [ModelSeconds(m, day.get(m, 0.0), total.get(m, 0.0)) for m in sorted(total.keys() | day.keys())]


def daily_chart(db: DashboardDb, now: datetime, days: int = CHART_DAYS) -> dict[str, list[float]]:
    """Solved and failed runs per UTC day (by start) over the last ``days`` days, for uPlot.

    ``x`` is each day's midnight in unix seconds; failed counts the error outcomes (failed,
    exhausted, error); days without runs are zeros, so the chart's x axis is even.
    """
    first = (now.astimezone(UTC) - (days - 1) * DAY).replace(hour=0, minute=0, second=0, microsecond=0)
    marks = ", ".join("?" * len(ERROR_OUTCOMES))
    sql = (f"SELECT substr(ts, 1, 10) AS day, SUM(outcome = 'success'), SUM(outcome IN ({marks}))"
           " FROM runs WHERE ts >= ? GROUP BY day")  # fmt: skip
    found = {r[0]: (r[1], r[2]) for r in db.rows(sql, (*ERROR_OUTCOMES, iso(first)))}
    chart: dict[str, list[float]] = {"x": [], "solved": [], "failed": []}
    for i in range(days):
        day = first + i * DAY
        solved, failed = found.get(day.date().isoformat(), (0, 0))
        chart["x"].append(day.timestamp())
        chart["solved"].append(solved)
        chart["failed"].append(failed)
    return chart


def _age_s(ts: str, now: datetime) -> float:
    return max(0.0, (now - datetime.fromisoformat(ts)).total_seconds())


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None
