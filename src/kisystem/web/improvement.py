"""What the Improvement page shows: the feedback loop's patterns and learnings, the opportunities the
jobs found, optimization plans (those awaiting approval first), configuration versions, and the
scheduled jobs with their history.

Everything is read from the learning database over the dashboard's read-only connection, and the
rows become the very dataclasses the stores return (:class:`~kisystem.improve.plans.Plan`,
:class:`~kisystem.schedule.store.JobRun`, ...), through the stores' own row readers: the page shows
what ``kisystem feedback | optimize | schedule`` show, described the same way.  A table that a
database of an older schema lacks reads as None ("not yet"), never as an error.

Opportunities are not stored as such: they are computed (and the computation stores patterns),
which a read-only page must not do.  The page shows those the newest successful run of each job
that looks for them reported (``improvement_proposals``, ``health_profiling``, ``security_scan``),
and each plan carries the opportunity it was made for.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kisystem.improve.feedback import _learning as learning_of_row
from kisystem.improve.feedback import _pattern as pattern_of_row
from kisystem.improve.learnings import Learning
from kisystem.improve.patterns import DetectedPattern
from kisystem.improve.plans import Plan, Severity
from kisystem.improve.versions import SHIPPED, ConfigVersion, PlanResult
from kisystem.improve.versions import _plan as plan_of_row
from kisystem.improve.versions import _result as result_of_row
from kisystem.improve.versions import _version as version_of_row
from kisystem.schedule.daemon import result_summary
from kisystem.schedule.store import JobRun, JobState
from kisystem.schedule.store import _job as job_of_row
from kisystem.schedule.store import _run as run_of_row
from kisystem.web.db import DashboardDb

PATTERNS_SHOWN = 50
LEARNINGS_SHOWN = 50
PLANS_SHOWN = 30  # decided plans; every plan awaiting approval is shown
VERSIONS_SHOWN = 30
JOB_RUNS_SHOWN = 50
SUMMARY_CHARS = 160


@dataclass(frozen=True)
class PlanRow:
    """A plan and the newest result of applying it (None while it waits, or when it was rejected)."""

    plan: Plan
    result: PlanResult | None


@dataclass(frozen=True)
class Versions:
    """The configuration versions, newest first, and the active one (SHIPPED when none is)."""

    active: int
    shown: list[ConfigVersion]
    total: int


@dataclass(frozen=True)
class FoundOpportunity:
    """An opportunity as a job's newest successful run reported it (the job's one-line summary)."""

    job: str
    ts: str
    type: str
    severity: str
    agent: str | None
    domain: str | None
    summary: str


@dataclass(frozen=True)
class JobRow:
    """A job the scheduler knows, its newest run and its counts over every logged run."""

    job: JobState
    last: JobRun | None
    runs: int
    errors: int

    @property
    def running(self) -> bool:
        return self.job.run_open and self.job.lease_holder is not None


@dataclass(frozen=True)
class RunLine:
    """A logged run of a job and what came of it, in one line."""

    run: JobRun
    summary: str


def patterns(db: DashboardDb, limit: int = PATTERNS_SHOWN) -> list[DetectedPattern] | None:
    """Stored feedback patterns, the most recently detected first (then the surest)."""
    if not db.has("feedback_patterns"):
        return None
    rows = db.rows("SELECT * FROM feedback_patterns ORDER BY detected_ts DESC, confidence DESC, id LIMIT ?", (limit,))
    return [pattern_of_row(r) for r in rows]


def learnings(db: DashboardDb, limit: int = LEARNINGS_SHOWN) -> list[Learning] | None:
    """Stored learnings, the highest impact first (as the prompts take them)."""
    if not db.has("feedback_learnings"):
        return None
    rows = db.rows("SELECT * FROM feedback_learnings ORDER BY impact DESC, updated_ts DESC, id LIMIT ?", (limit,))
    return [learning_of_row(r) for r in rows]


def awaiting_approval(db: DashboardDb) -> list[Plan] | None:
    """Plans that wait for approval, oldest first (the order they were proposed in)."""
    if not db.has("optimization_plans"):
        return None
    return [plan_of_row(r) for r in db.rows("SELECT * FROM optimization_plans WHERE status = 'awaiting_approval'"
                                            " ORDER BY id")]  # fmt: skip


def recent_plans(db: DashboardDb, limit: int = PLANS_SHOWN) -> list[PlanRow] | None:
    """The plans that no longer wait, the most recently decided first, each with its newest result."""
    if not db.has("optimization_plans"):
        return None
    plans = [plan_of_row(r) for r in db.rows("SELECT * FROM optimization_plans WHERE status != 'awaiting_approval'"
                                             " ORDER BY updated_ts DESC, id DESC LIMIT ?", (limit,))]  # fmt: skip
    results = _newest_results(db, [p.id for p in plans if p.id is not None])
    return [PlanRow(p, results.get(p.id)) for p in plans]


def _newest_results(db: DashboardDb, plan_ids: list[int]) -> dict[int, PlanResult]:
    if not plan_ids or not db.has("optimization_results"):
        return {}
    marks = ", ".join("?" * len(plan_ids))
    rows = db.rows(f"SELECT * FROM optimization_results WHERE id IN (SELECT MAX(id) FROM optimization_results"
                   f" WHERE plan IN ({marks}) GROUP BY plan)", tuple(plan_ids))  # fmt: skip
    return {r["plan"]: result_of_row(r) for r in rows}


def versions(db: DashboardDb, limit: int = VERSIONS_SHOWN) -> Versions | None:
    """The newest configuration versions and which one is active (0: the shipped configuration)."""
    if not db.has("config_versions"):
        return None
    shown = [version_of_row(r) for r in db.rows("SELECT * FROM config_versions ORDER BY id DESC LIMIT ?", (limit,))]
    active = db.value("SELECT id FROM config_versions WHERE active = 1")
    return Versions(int(active) if active is not None else SHIPPED, shown,
                    int(db.value("SELECT COUNT(*) FROM config_versions")))


def opportunities(db: DashboardDb) -> list[FoundOpportunity] | None:
    """The opportunities in the newest successful run of every job that reports them, most severe first."""
    if not db.has("schedule_runs"):
        return None
    rows = db.rows("SELECT task, finished, result FROM schedule_runs WHERE id IN"
                   " (SELECT MAX(id) FROM schedule_runs WHERE status = 'success' GROUP BY task)")  # fmt: skip
    found = [_opportunity(r["task"], r["finished"], item) for r in rows
             for item in _listed(r["result"], "opportunities")]  # fmt: skip
    return sorted(found, key=lambda o: (-_rank(o.severity), o.type, o.agent or "", o.domain or "", o.job))


def _listed(result: str, key: str) -> list[dict[str, Any]]:
    try:
        value = json.loads(result).get(key)
    except (ValueError, AttributeError):
        return []
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _opportunity(job: str, ts: str, item: dict[str, Any]) -> FoundOpportunity:
    text = lambda key: None if item.get(key) is None else str(item[key])
    return FoundOpportunity(job, ts, str(item.get("type", "?")), str(item.get("severity", "?")), text("agent"),
                            text("domain"), str(item.get("summary", "")))


def _rank(severity: str) -> int:
    try:
        return Severity(severity).rank
    except ValueError:
        return -1


def jobs(db: DashboardDb) -> list[JobRow] | None:
    """Every job a scheduler has registered, the next due first, with its newest run and run counts."""
    if not db.has("schedule_jobs"):
        return None
    states = [job_of_row(r) for r in db.rows("SELECT * FROM schedule_jobs ORDER BY next_due, name")]
    last = {r["task"]: run_of_row(r) for r in db.rows(
        "SELECT * FROM schedule_runs WHERE id IN (SELECT MAX(id) FROM schedule_runs GROUP BY task)")}
    counts = {r[0]: (r[1], r[2]) for r in db.rows(
        "SELECT task, COUNT(*), SUM(status = 'error') FROM schedule_runs GROUP BY task")}
    return [JobRow(s, last.get(s.name), *counts.get(s.name, (0, 0))) for s in states]


def job_runs(db: DashboardDb, limit: int = JOB_RUNS_SHOWN) -> list[RunLine] | None:
    """The newest logged runs of every job, with a one-line summary of each."""
    if not db.has("schedule_runs"):
        return None
    runs = [run_of_row(r) for r in db.rows("SELECT * FROM schedule_runs ORDER BY started DESC, id DESC LIMIT ?",
                                           (limit,))]  # fmt: skip
    return [RunLine(r, run_summary(r)) for r in runs]


def run_summary(run: JobRun) -> str:
    """What came of a run: its error, why it was skipped, or its result's top-level figures."""
    if run.status == "error":
        return run.error or "error"
    if run.status == "skipped":
        return f"skipped: {run.reason}" + (f" ({result_summary(run.result, SUMMARY_CHARS)})" if run.result else "")
    return result_summary(run.result, SUMMARY_CHARS)


def iso_of(value: datetime | None) -> str | None:
    """A datetime as the ISO text the page's ``when`` filter reads."""
    return value.isoformat() if value is not None else None


def due_in_s(job: JobState, now: datetime) -> float:
    """Seconds until ``job`` is due (0 when it is due now)."""
    return max(0.0, (job.next_due - now).total_seconds())
