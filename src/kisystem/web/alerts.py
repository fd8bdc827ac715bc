"""Alerts: what needs a person's attention, read from what the learning database records.

One function per kind, each ``(db, now) -> list[Alert]`` over a bounded read:

=======================  ===================================================================
kind                     fires when
=======================  ===================================================================
``health_drop``          a stored health score (``health_history``) fell by at least
                         HEALTH_DROP_POINTS from the previous score of the same model and
                         window, within the last ALERT_DAYS days; or a model's newest score
                         is below HEALTH_FLOOR (critical)
``new_failure_pattern``  a failure pattern of the feedback loop was first seen (its first
                         failure in the detection window) within the last NEW_PATTERN_DAYS
``job_failing``          a scheduled job's newest run in the last ALERT_DAYS days ended in an
                         error (critical from JOB_STREAK_CRITICAL errors in a row)
``backend_unreachable``  within the last BACKEND_DAYS a run ended because no backend answered,
                         the loop skipped a model because its endpoint refused the connection
                         or was cooling down, or health profiling found an endpoint silent;
                         one alert per endpoint
=======================  ===================================================================

Nothing here is stored: the alerts are the database's present state, so one goes away when what
caused it does (a newer, better health score; a job's next run succeeding).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from kisystem.store.times import iso
from kisystem.web.db import DashboardDb

ALERT_DAYS = 7
NEW_PATTERN_DAYS = 1
BACKEND_DAYS = 1
HEALTH_DROP_POINTS = 10.0
HEALTH_FLOOR = 50.0
JOB_STREAK_CRITICAL = 3
HEALTH_ROWS_READ = 2000  # newest health scores read (a score is stored per computation: few a day)
ROWS_READ = 500  # newest rows read per source of the other kinds
TEXT_CHARS = 300
PROFILING_JOB = "health_profiling"

# How the model clients word a backend that does not answer (kisystem.models.http: BackendUnreachable;
# kisystem.models.resilience: BackendCooledDown; health profiling's reachability check), and the
# error classes a run that ended on it names in its reason.
UNREACHABLE = re.compile(r": cannot connect \(|: connection failed \(| is cooling down for | does not answer: "
                         r"|^(?:BackendUnreachable|BackendCooledDown|ServerStartError): ")
_ENDPOINT = re.compile(r"(?P<name>[^\s()':]+) \((?P<url>[a-z][a-z0-9+.-]*://[^/\s)]+)[^)]*\)")
_COOLING = re.compile(r"endpoint '(?P<name>[^']+)' is cooling down")

_SKIPS = """
SELECT e.ts, json_extract(e.payload, '$.model') AS model, json_extract(e.payload, '$.reason') AS reason
FROM runs r CROSS JOIN run_events e ON e.run_id = r.run_id
WHERE r.ts >= ? AND e.kind = 'skip' ORDER BY e.id DESC LIMIT ?
"""


@dataclass(frozen=True)
class Alert:
    """One alert: what kind, how bad (critical | warning), about what, what happened, and when (ISO, UTC)."""

    kind: str
    severity: str
    subject: str
    message: str
    ts: str


def health_drops(db: DashboardDb, now: datetime, *, days: float = ALERT_DAYS,
                 drop_points: float = HEALTH_DROP_POINTS, floor: float = HEALTH_FLOOR) -> list[Alert]:
    """Health scores that fell by ``drop_points`` or more (in the last ``days``), and newest ones below ``floor``."""
    if not db.has("health_history"):
        return []
    rows = db.rows("SELECT id, ts, agent, days, score FROM health_history ORDER BY id DESC LIMIT ?",
                   (HEALTH_ROWS_READ,))  # fmt: skip
    series: dict[tuple[str, int], list] = {}
    for r in reversed(rows):  # oldest first
        series.setdefault((r["agent"], r["days"]), []).append(r)
    since = iso(now - timedelta(days=days))
    found = []
    for scores in series.values():
        for before, row in zip([None, *scores], scores, strict=False):
            fell = before is not None and row["ts"] >= since and before["score"] - row["score"] >= drop_points
            low = row is scores[-1] and row["score"] < floor
            if fell or low:
                found.append(_health_alert(before if fell else None, row, floor))
    return found


def _health_alert(before, row, floor: float) -> Alert:
    agent, score, window = row["agent"], row["score"], row["days"]
    low = score < floor
    what = f"{window}-day health of {agent}"
    if before is None:
        text = f"{what} is {score:.1f}, below the floor of {floor:g}"
    else:
        text = (f"{what} fell from {before['score']:.1f} to {score:.1f} ({before['score'] - score:.1f} points)"
                + (f", below the floor of {floor:g}" if low else ""))
    return Alert("health_drop", "critical" if low else "warning", agent, text, row["ts"])


def new_failure_patterns(db: DashboardDb, now: datetime, *, days: float = NEW_PATTERN_DAYS) -> list[Alert]:
    """Failure patterns of the feedback loop first seen in the last ``days``."""
    if not db.has("feedback_patterns"):
        return []
    rows = db.rows("SELECT agent_id, domain, description, frequency, total, confidence, first_ts FROM feedback_patterns"
                   " WHERE pattern_type = 'failure' AND first_ts >= ? ORDER BY first_ts DESC, id DESC LIMIT ?",
                   (iso(now - timedelta(days=days)), ROWS_READ))  # fmt: skip
    return [Alert("new_failure_pattern", "warning", r["agent_id"] + (f" on {r['domain']}" if r["domain"] else ""),
                  f"{r['description']} (confidence {r['confidence']:.2f})", r["first_ts"]) for r in rows]


def failing_jobs(db: DashboardDb, now: datetime, *, days: float = ALERT_DAYS) -> list[Alert]:
    """Scheduled jobs whose newest run (of the last ``days``) ended in an error."""
    if not db.has("schedule_runs"):
        return []
    rows = db.rows("SELECT task, status, error, finished FROM schedule_runs WHERE started >= ?"
                   " ORDER BY started DESC, id DESC LIMIT ?", (iso(now - timedelta(days=days)), ROWS_READ))
    by_task: dict[str, list] = {}
    for r in rows:  # newest first
        by_task.setdefault(r["task"], []).append(r)
    found = []
    for task, runs in by_task.items():
        streak = next((i for i, r in enumerate(runs) if r["status"] != "error"), len(runs))
        if streak:
            times = f" {streak} times in a row" if streak > 1 else ""
            found.append(Alert("job_failing", "critical" if streak >= JOB_STREAK_CRITICAL else "warning", task,
                               f"{task} failed{times}: {_cut(runs[0]['error'] or 'error')}", runs[0]["finished"]))
    return found


@dataclass(frozen=True)
class _Sighting:
    ts: str
    source: str
    text: str
    model: str | None


def unreachable_backends(db: DashboardDb, now: datetime, *, days: float = BACKEND_DAYS) -> list[Alert]:
    """Endpoints that did not answer in the last ``days``: one alert each, with how often and the newest sign."""
    since = iso(now - timedelta(days=days))
    seen = [*_ended_runs(db, since), *_skipped_models(db, since), *_profiled(db, since)]
    by_subject: dict[str, list[_Sighting]] = {}
    for s in sorted(seen, key=lambda s: s.ts, reverse=True):
        by_subject.setdefault(_subject(s), []).append(s)
    return [_backend_alert(subject, found, days) for subject, found in by_subject.items()]


def _ended_runs(db: DashboardDb, since: str) -> list[_Sighting]:
    rows = db.rows("SELECT model, reason, COALESCE(ended_ts, ts) AS at FROM runs WHERE ts >= ? AND outcome = 'error'"
                   " AND reason IS NOT NULL ORDER BY ts DESC LIMIT ?", (since, ROWS_READ))  # fmt: skip
    return [_Sighting(r["at"], "run ended", r["reason"], r["model"]) for r in rows if UNREACHABLE.search(r["reason"])]


def _skipped_models(db: DashboardDb, since: str) -> list[_Sighting]:
    rows = db.rows(_SKIPS, (since, ROWS_READ))
    return [_Sighting(r["ts"], "model skipped", str(r["reason"]), r["model"]) for r in rows
            if r["reason"] and UNREACHABLE.search(str(r["reason"]))]  # fmt: skip


def _profiled(db: DashboardDb, since: str) -> list[_Sighting]:
    """Models health profiling found silent in its newest successful run (when that ended in the window)."""
    if not db.has("schedule_runs"):
        return []
    rows = db.rows("SELECT finished, result FROM schedule_runs WHERE task = ? AND status = 'success'"
                   " ORDER BY id DESC LIMIT 1", (PROFILING_JOB,))  # fmt: skip
    if not rows or rows[0]["finished"] < since:
        return []
    try:
        models = json.loads(rows[0]["result"]).get("models") or {}
    except (ValueError, AttributeError):
        return []
    return [_Sighting(rows[0]["finished"], "health profiling", str(m["reason"]), name)
            for name, m in sorted(models.items()) if isinstance(m, dict) and m.get("reachable") is False
            and m.get("reason") and UNREACHABLE.search(str(m["reason"]))]  # fmt: skip


def _subject(s: _Sighting) -> str:
    """The endpoint a sighting names (``NAME (scheme://host:port)``), else the model it was about."""
    if found := _ENDPOINT.search(s.text):
        return f"{found['name']} ({found['url']})"
    if found := _COOLING.search(s.text):
        return found["name"]
    return f"model {s.model}" if s.model else "a backend"


def _backend_alert(subject: str, found: list[_Sighting], days: float) -> Alert:
    sources: dict[str, int] = {}
    for s in found:
        sources[s.source] = sources.get(s.source, 0) + 1
    how = ", ".join(f"{source} {n}x" for source, n in sources.items())
    window = f"{days * 24:g} h" if days <= 2 else f"{days:g} days"
    return Alert("backend_unreachable", "critical", subject,
                 f"did not answer in the last {window} ({how}); the newest: {_cut(found[0].text)}", found[0].ts)


def _cut(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[: TEXT_CHARS - 1] + "…"


KINDS: dict[str, Callable[[DashboardDb, datetime], list[Alert]]] = {
    "health_drop": health_drops, "new_failure_pattern": new_failure_patterns, "job_failing": failing_jobs,
    "backend_unreachable": unreachable_backends,
}  # fmt: skip


def all_alerts(db: DashboardDb, now: datetime) -> list[Alert]:
    """Every kind's alerts, newest first (critical before warning at the same time)."""
    found = [alert for kind in KINDS.values() for alert in kind(db, now)]
    return sorted(found, key=lambda a: (a.ts, a.severity == "critical", a.kind, a.subject), reverse=True)
