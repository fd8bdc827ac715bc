"""The scheduler's tables in the learning database (migration 10): :class:`ScheduleStore`.

``schedule_jobs`` holds one row per job: its trigger, when it is due next, and the lease of
the scheduler running it.  A claim is one ``BEGIN IMMEDIATE`` transaction that leases a job
only when it is due and its lease is free, expired, or held by a process that is gone, so
two schedulers (threads, processes) never run one job at once.  ``next_due`` moves only when
a run ends (to its start + the interval), so a scheduler killed during a run leaves the job
due: the next claim records the lost run as an ``interrupted`` error and runs the job again;
nothing is lost, and nothing runs twice.

``schedule_runs`` is the append-only results log: one row per run with its status
(success / error / skipped with a reason), result JSON, error, times, and how many due
times it stood for (``missed``: a month of downtime is one catch-up run, never a burst).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kisystem.schedule.holders import holder_gone
from kisystem.schedule.tasks import OptimizationTask
from kisystem.store import db
from kisystem.store.base import GuardedStore, where
from kisystem.store.times import iso as _iso
from kisystem.store.times import iso_opt as _iso_opt
from kisystem.store.times import parse as _parse
from kisystem.store.times import parse_opt as _parse_opt

Clock = Callable[[], datetime]
Gone = Callable[[str], "str | None"]
WHAT = "learning database"
INTERRUPTED = "interrupted"


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobState:
    """A job's row: its trigger, when it is due, who holds it now, when it last started and ended."""

    name: str
    agent: str
    trigger: str
    interval_s: float
    description: str
    registered: datetime
    next_due: datetime
    lease_holder: str | None
    lease_expires: float | None  # unix seconds
    last_started: datetime | None
    last_finished: datetime | None
    run_open: bool  # a run started and is not logged yet: its holder runs it now, or died in it

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "agent": self.agent, "trigger": self.trigger, "interval_s": self.interval_s,
                "description": self.description, "registered": _iso(self.registered), "next_due": _iso(self.next_due),
                "lease_holder": self.lease_holder, "lease_expires": self.lease_expires,
                "last_started": _iso_opt(self.last_started), "last_finished": _iso_opt(self.last_finished),
                "run_open": self.run_open}


@dataclass(frozen=True)
class Claim:
    """A job leased to ``holder`` for one run started at ``started``."""

    name: str
    agent: str
    holder: str
    started: datetime
    due: datetime
    interval_s: float
    missed: int  # due times besides the first that passed before this run: a catch-up run stands for them
    manual: bool  # run on request (``schedule run JOB``), due or not


@dataclass(frozen=True)
class Outcome:
    """How a run ended, as the scheduler hands it to the store."""

    status: str  # success | error | skipped
    result: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None
    error: str | None = None  # one line: type and message
    traceback: str | None = None


@dataclass(frozen=True)
class JobRun:
    """One row of the results log."""

    id: int
    task: str
    agent: str
    status: str
    reason: str | None
    result: dict[str, Any]
    error: str | None
    traceback: str | None
    started: datetime
    finished: datetime
    missed: int
    manual: bool
    holder: str | None

    @property
    def catch_up(self) -> bool:
        return self.missed > 0

    @property
    def duration_s(self) -> float:
        return max(0.0, (self.finished - self.started).total_seconds())

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "task": self.task, "agent": self.agent, "status": self.status, "reason": self.reason,
                "result": self.result, "error": self.error, "traceback": self.traceback,
                "started": _iso(self.started), "finished": _iso(self.finished), "duration_s": self.duration_s,
                "missed": self.missed, "catch_up": self.catch_up, "manual": self.manual, "holder": self.holder}


@dataclass(frozen=True)
class TaskStats:
    """A task's runs by status; the success rate counts successes among the runs that did something
    (success + error): a skipped run (nothing to do, no network) says nothing about the job."""

    task: str
    runs: int
    successes: int
    errors: int
    skipped: int
    last: JobRun | None

    @property
    def success_rate(self) -> float | None:
        decided = self.successes + self.errors
        return self.successes / decided if decided else None

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "runs": self.runs, "successes": self.successes, "errors": self.errors,
                "skipped": self.skipped, "success_rate": self.success_rate,
                "last": self.last.to_json() if self.last else None}


class ScheduleStore(GuardedStore):
    """All reads and writes of ``schedule_jobs`` and ``schedule_runs``, through one :class:`db.Guarded`
    (its own, or another store's: ``ScheduleStore(learning.guarded)`` shares the learning store's
    connection, lock and clock)."""

    def __init__(self, guarded: db.Guarded) -> None:
        self.guarded = guarded

    @classmethod
    def open(cls, path: Path, *, clock: Clock = utc_now) -> ScheduleStore:
        """Open (creating if needed) the learning database at ``path``, schema brought up to date."""
        path = Path(path)
        return cls(db.Guarded(db.open_migrated(path), path, clock, WHAT))

    def now(self) -> datetime:
        return self.guarded.clock()

    # -- the job registry ------------------------------------------------------------------

    def sync(self, task: OptimizationTask) -> JobState:
        """The job's row, added when new (due at once) or updated when its trigger or text changed.

        A changed interval counts from the last start: a job moved from monthly to daily that
        ran a week ago is due at once, not in a month."""
        current = self.job(task.name)
        interval_s = task.interval.total_seconds()
        if current is not None and (current.agent, current.trigger, current.interval_s, current.description) == (
                task.agent, task.trigger, interval_s, task.description):  # fmt: skip
            return current
        now = _iso(self.now())
        with self._writing(f"cannot register scheduled job {task.name!r}") as conn:
            conn.execute("INSERT INTO schedule_jobs (name, agent, trigger, interval_s, description, registered_ts,"
                         " next_due) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET agent ="
                         " excluded.agent, trigger = excluded.trigger, interval_s = excluded.interval_s,"
                         " description = excluded.description",
                         (task.name, task.agent, task.trigger, interval_s, task.description, now, now))  # fmt: skip
            if current is not None and current.interval_s != interval_s and current.last_started is not None:
                due = current.last_started + timedelta(seconds=interval_s)
                conn.execute("UPDATE schedule_jobs SET next_due = ? WHERE name = ?", (_iso(due), task.name))
        return self._job_or_fail(task.name)

    def jobs(self) -> list[JobState]:
        return [_job(r) for r in self._rows("SELECT * FROM schedule_jobs ORDER BY next_due, name")]

    def job(self, name: str) -> JobState | None:
        rows = self._rows("SELECT * FROM schedule_jobs WHERE name = ?", (name,))
        return _job(rows[0]) if rows else None

    def leases(self) -> list[JobState]:
        return [_job(r) for r in self._rows("SELECT * FROM schedule_jobs WHERE lease_holder IS NOT NULL")]

    # -- claims and their end --------------------------------------------------------------

    def claim(self, name: str, holder: str, lease_s: float, *, manual: bool = False,
              gone: Gone = holder_gone) -> Claim | None:  # fmt: skip
        """Lease job ``name`` to ``holder`` when it is due (or ``manual``) and nobody else can be running it.

        A lapsed lease (expired, or its holder's process gone) is ended first, its unfinished
        run recorded as interrupted.  None when the job is not due or is held."""
        with self._writing(f"cannot claim scheduled job {name!r}") as conn:
            job = _job_at(conn, name)
            now = self.now()
            if job is None or job.lease_holder == holder:
                return None
            if job.lease_holder is not None:
                why = lapse_reason(job, now, gone)
                if why is None:
                    return None
                self._end_lapsed(conn, job, why, now)
            if not manual and job.next_due > now:
                return None
            conn.execute("UPDATE schedule_jobs SET lease_holder = ?, lease_expires = ?, last_started = ?, run_open = 1"
                         " WHERE name = ?", (holder, now.timestamp() + lease_s, _iso(now), name))  # fmt: skip
        return Claim(name, job.agent, holder, now, job.next_due, job.interval_s, _missed(job, now), manual)

    def extend(self, name: str, holder: str, lease_s: float) -> bool:
        """Push ``holder``'s lease on ``name`` out to now + ``lease_s``; False when it no longer holds it."""
        with self._writing(f"cannot extend the lease of scheduled job {name!r}") as conn:
            cur = conn.execute("UPDATE schedule_jobs SET lease_expires = ? WHERE name = ? AND lease_holder = ?",
                               (self.now().timestamp() + lease_s, name, holder))  # fmt: skip
            return cur.rowcount == 1

    def finish(self, claim: Claim, outcome: Outcome, next_due: datetime | None, *,
               keep_lease_s: float | None = None) -> JobRun:  # fmt: skip
        """Log the run and, while ``claim`` still holds the job, set when it is due next (None: unchanged)
        and end the lease (``keep_lease_s``: keep it that much longer: the handler's thread still runs)."""
        finished = self.now()
        with self._writing(f"cannot record the run of scheduled job {claim.name!r}") as conn:
            run_id = _insert_run(conn, claim.name, claim.agent, outcome, claim.started, finished, claim.missed,
                                 claim.manual, claim.holder)  # fmt: skip
            lease = (None, None) if keep_lease_s is None else (claim.holder, finished.timestamp() + keep_lease_s)
            sets = "last_finished = ?, run_open = 0, lease_holder = ?, lease_expires = ?"
            params: tuple[Any, ...] = (_iso(finished), *lease)
            if next_due is not None:
                sets, params = f"{sets}, next_due = ?", (*params, _iso(next_due))
            conn.execute(f"UPDATE schedule_jobs SET {sets} WHERE name = ? AND lease_holder = ?",
                         (*params, claim.name, claim.holder))  # fmt: skip
        return self._run_or_fail(run_id)

    def release(self, name: str, holder: str) -> bool:
        """End ``holder``'s lease on ``name`` without recording anything (its run was recorded already)."""
        with self._writing(f"cannot release scheduled job {name!r}") as conn:
            cur = conn.execute("UPDATE schedule_jobs SET lease_holder = NULL, lease_expires = NULL"
                               " WHERE name = ? AND lease_holder = ?", (name, holder))  # fmt: skip
            return cur.rowcount == 1

    def take_over(self, job: JobState, why: str) -> JobRun | None:
        """End the lapsed lease exactly as seen in ``job``; its unfinished run is logged as interrupted.

        None when the lease changed meanwhile or no run was left unfinished."""
        with self._writing(f"cannot take over scheduled job {job.name!r}") as conn:
            now = _job_at(conn, job.name)
            if now is None or (now.lease_holder, now.lease_expires) != (job.lease_holder, job.lease_expires):
                return None
            run_id = self._end_lapsed(conn, now, why, self.now())
        return self._run_or_fail(run_id) if run_id is not None else None

    def _end_lapsed(self, conn: Any, job: JobState, why: str, now: datetime) -> int | None:
        conn.execute("UPDATE schedule_jobs SET lease_holder = NULL, lease_expires = NULL, run_open = 0"
                     " WHERE name = ?", (job.name,))  # fmt: skip
        if not job.run_open:
            return None  # its run was logged (past its time limit, its thread still going): only the lease was left
        error = f"the run of {job.lease_holder} never ended: {why}"
        outcome = Outcome("error", reason=INTERRUPTED, error=error)
        conn.execute("UPDATE schedule_jobs SET last_finished = ? WHERE name = ?", (_iso(now), job.name))
        started = job.last_started or now
        return _insert_run(conn, job.name, job.agent, outcome, started, now, 0, False, job.lease_holder)

    # -- the results log -------------------------------------------------------------------

    def history(self, days: float | None = None, task: str | None = None, limit: int | None = None) -> list[JobRun]:
        """Runs that started in the last ``days`` (all when None), of ``task`` (every task when None), newest first."""
        clause, params = _window(days, task, self.now())
        sql = f"SELECT * FROM schedule_runs {clause} ORDER BY started DESC, id DESC"
        if limit is not None:
            sql, params = f"{sql} LIMIT ?", (*params, int(limit))
        return [_run(r) for r in self._rows(sql, params)]

    def stats(self, days: float | None = None) -> list[TaskStats]:
        """Runs per task and status (and the success rate), over the last ``days`` or all time."""
        clause, params = _window(days, None, self.now())
        rows = self._rows("SELECT task, COUNT(*) AS runs, SUM(status = 'success') AS successes,"
                          " SUM(status = 'error') AS errors, SUM(status = 'skipped') AS skipped"
                          f" FROM schedule_runs {clause} GROUP BY task ORDER BY task", params)  # fmt: skip
        last = self.last_results()
        return [TaskStats(r["task"], r["runs"], r["successes"], r["errors"], r["skipped"], last.get(r["task"]))
                for r in rows]  # fmt: skip

    def last_results(self) -> dict[str, JobRun]:
        """The newest run of every task."""
        rows = self._rows("SELECT * FROM schedule_runs WHERE id IN (SELECT MAX(id) FROM schedule_runs GROUP BY task)"
                          " ORDER BY task")  # fmt: skip
        return {r["task"]: _run(r) for r in rows}

    def run(self, run_id: int) -> JobRun | None:
        rows = self._rows("SELECT * FROM schedule_runs WHERE id = ?", (run_id,))
        return _run(rows[0]) if rows else None

    def known_names(self) -> list[str]:
        """Every job the database has seen (registered now or not)."""
        return [r["name"] for r in self._rows("SELECT name FROM schedule_jobs ORDER BY name")]

    # -- plumbing --------------------------------------------------------------------------

    def _job_or_fail(self, name: str) -> JobState:
        job = self.job(name)
        assert job is not None, name
        return job

    def _run_or_fail(self, run_id: int) -> JobRun:
        run = self.run(run_id)
        assert run is not None, run_id
        return run

    @contextmanager
    def _writing(self, what: str) -> Iterator[Any]:
        with self.guarded.writing(what) as conn:
            yield conn

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        return self.guarded.rows(sql, params, what="cannot read the scheduled jobs")


def lapse_reason(job: JobState, now: datetime, gone: Gone = holder_gone) -> str | None:
    """Why ``job``'s lease no longer protects a run; None while its holder may still be running it."""
    assert job.lease_holder is not None
    if job.lease_expires is not None and job.lease_expires < now.timestamp():
        return f"its lease expired at {_iso(datetime.fromtimestamp(job.lease_expires, UTC))}"
    return gone(job.lease_holder)


def _missed(job: JobState, now: datetime) -> int:
    """Due times after the first that passed by ``now``: what one catch-up run stands for."""
    late = (now - job.next_due).total_seconds()
    return int(late // job.interval_s) if late > 0 else 0


def _insert_run(conn: Any, task: str, agent: str, outcome: Outcome, started: datetime, finished: datetime,
                missed: int, manual: bool, holder: str | None) -> int:  # fmt: skip
    cur = conn.execute(
        "INSERT INTO schedule_runs (task, agent, status, reason, result, error, traceback, started, finished,"
        " missed, manual, holder) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (task, agent, outcome.status, outcome.reason, json.dumps(dict(outcome.result), default=str), outcome.error,
         outcome.traceback, _iso(started), _iso(finished), missed, int(manual), holder))  # fmt: skip
    return int(cur.lastrowid)


def _window(days: float | None, task: str | None, now: datetime) -> tuple[str, tuple[Any, ...]]:
    since = _iso(now - timedelta(days=days)) if days is not None else None
    return where(("started >= ?", since), ("task = ?", task))


def _job_at(conn: Any, name: str) -> JobState | None:
    row = conn.execute("SELECT * FROM schedule_jobs WHERE name = ?", (name,)).fetchone()
    return _job(row) if row is not None else None


def _job(r: Any) -> JobState:
    return JobState(r["name"], r["agent"], r["trigger"], r["interval_s"], r["description"], _parse(r["registered_ts"]),
                    _parse(r["next_due"]), r["lease_holder"], r["lease_expires"], _parse_opt(r["last_started"]),
                    _parse_opt(r["last_finished"]), bool(r["run_open"]))  # fmt: skip


def _run(r: Any) -> JobRun:
    return JobRun(r["id"], r["task"], r["agent"], r["status"], r["reason"], json.loads(r["result"]), r["error"],
                  r["traceback"], _parse(r["started"]), _parse(r["finished"]), r["missed"], bool(r["manual"]),
                  r["holder"])  # fmt: skip


