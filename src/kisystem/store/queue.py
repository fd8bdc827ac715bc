"""The durable task queue: :class:`QueueStore` owns every SQL statement over its tables.

States and their legal changes are data (``QUEUE_STATES``, ``QUEUE_TRANSITIONS`` in
migration 4).  The database itself rejects any other change of state and logs every
change in the append-only ``queue_transitions`` (triggers), so no code path can skip
the check or the log.

A claim is one ``BEGIN IMMEDIATE`` transaction: read the queued candidates, let the
caller's ranking pick one, lease it.  A lease has a holder and an expiry (unix seconds);
heartbeats extend it.  :meth:`QueueStore.take_over` ends a lease that lapsed: the task
returns to the queue, goes to ``dead`` once it has been claimed ``max_attempts`` times,
or adopts the result of a run that finished before its worker died.  Each attempt's
learning run is recorded in ``queue_runs`` before the run starts, so a run left
``running`` by a dead worker can always be found and closed.  ``queue_answers`` keeps
every model answer of a task, so a restarted attempt replays them instead of asking again.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kisystem.errors import StoreError, UsageError
from kisystem.store import db
from kisystem.store.base import GuardedStore
from kisystem.store.migrations import QUEUE_STATES, QUEUE_TRANSITIONS

ACTIVE_STATES: tuple[str, ...] = ("leased", "running")
FINAL_STATES: tuple[str, ...] = ("succeeded", "failed", "exhausted", "cancelled", "dead")
RESULT_STATES: tuple[str, ...] = ("succeeded", "failed", "exhausted")
RETRYABLE_STATES: tuple[str, ...] = ("failed", "exhausted", "cancelled", "dead")
LEGAL: frozenset[tuple[str, str]] = frozenset(QUEUE_TRANSITIONS)

UnixClock = Callable[[], float]


def is_legal(from_state: str, to_state: str) -> bool:
    return (from_state, to_state) in LEGAL


class IllegalTransition(StoreError):
    """A state change outside ``QUEUE_TRANSITIONS`` was asked for."""


class QueueTaskNotFound(UsageError):
    """No queued task has the given id."""


class QueueCommandRefused(UsageError):
    """A user asked for a change the task's state does not allow (e.g. cancel a finished task)."""


@dataclass(frozen=True)
class Submission:
    """One task to add: its spec as TOML text, and the key that makes adding it idempotent."""

    spec: str
    task: str
    domain: str
    key: str
    source: str | None = None
    priority: float | None = None
    model: str | None = None
    max_attempts: int = 3


@dataclass(frozen=True)
class Added:
    id: int
    key: str
    task: str
    added: bool  # False: the key was already in the queue, nothing was added
    state: str


@dataclass(frozen=True)
class Candidate:
    """The oldest queued task of one (domain, model, priority) group; ``waiting`` in the group."""

    id: int
    domain: str
    model: str | None
    priority: float | None
    waiting: int


@dataclass(frozen=True)
class Claim:
    id: int
    task: str
    domain: str
    spec: str
    model: str | None
    priority: float | None
    attempt: int
    max_attempts: int
    holder: str
    lease_expires: float


@dataclass(frozen=True)
class Lease:
    """An active task as a recovery pass saw it; ``take_over`` succeeds only if it is unchanged."""

    id: int
    task: str
    state: str
    holder: str | None
    expires: float | None
    run_id: str | None
    attempts: int
    max_attempts: int


@dataclass(frozen=True)
class Adopted:
    """The result of a finished run that a recovery pass hands to its task."""

    state: str
    outcome: str
    score: float | None
    note: str | None


@dataclass(frozen=True)
class QueueTask:
    id: int
    key: str
    task: str
    domain: str
    source: str | None
    priority: float | None
    model: str | None
    state: str
    attempts: int
    max_attempts: int
    lease_holder: str | None
    lease_expires: float | None
    run_id: str | None
    outcome: str | None
    score: float | None
    note: str | None
    created_ts: str
    updated_ts: str


@dataclass(frozen=True)
class Transition:
    id: int
    task: int
    from_state: str | None
    to_state: str
    ts: str
    holder: str | None
    attempt: int
    note: str | None


@dataclass(frozen=True)
class StoredAnswer:
    model: str
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    first_token_s: float | None
    total_s: float


_TASK_COLUMNS = (
    "id, idem_key AS key, task, domain, source, priority, model, state, attempts, max_attempts,"
    " lease_holder, lease_expires, run_id, outcome, score, note, created_ts, updated_ts"
)
_INSERT = (
    "INSERT INTO queue_tasks (idem_key, task, domain, spec, source, priority, model, max_attempts,"
    " note, created_ts, updated_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'added', ?, ?)"
    " ON CONFLICT (idem_key) DO NOTHING"
)
_CANDIDATES = (
    "SELECT MIN(id) AS id, domain, model, priority, COUNT(*) AS waiting FROM queue_tasks"
    " WHERE state = 'queued' GROUP BY domain, model, priority"
)
_ANSWER_COLUMNS = "model, text, prompt_tokens, completion_tokens, finish_reason, first_token_s, total_s"
_CLOSE_RUNS = "UPDATE queue_runs SET open = 0 WHERE task = ? AND open = 1"


class QueueStore(GuardedStore):
    """All reads and writes of the queue tables; one connection, shared under a lock.

    Leases count in unix seconds (``clock``); ``guarded.clock`` is the same clock as a UTC time.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: UnixClock = time.time) -> None:
        self._clock = clock
        self.guarded = db.Guarded(conn, path, lambda: datetime.fromtimestamp(self._clock(), UTC), "queue")

    @classmethod
    def open(cls, path: Path, *, clock: UnixClock = time.time) -> QueueStore:
        """Open (creating if needed) the database at ``path``, schema brought up to date."""
        path = Path(path)
        return cls(db.open_migrated(path), path, clock)

    def now(self) -> float:
        return self._clock()

    # -- submissions ---------------------------------------------------------------------

    def add(self, submissions: Iterable[Submission]) -> list[Added]:
        """Add every submission whose key is new, in one transaction; report each one."""
        ts = self._ts()
        out: list[Added] = []
        with self.guarded.writing("cannot add tasks to the queue") as conn:
            for s in submissions:
                fresh = conn.execute(_INSERT, (s.key, s.task, s.domain, s.spec, s.source, s.priority,
                                               s.model, s.max_attempts, ts, ts)).rowcount == 1
                row = conn.execute("SELECT id, task, state FROM queue_tasks WHERE idem_key = ?", (s.key,)).fetchone()
                out.append(Added(row["id"], s.key, row["task"], fresh, row["state"]))
        return out

    # -- the life of a claim -------------------------------------------------------------

    def claim(self, holder: str, lease_s: float,
              pick: Callable[[list[Candidate]], Candidate | None]) -> Claim | None:  # fmt: skip
        """Lease the queued task ``pick`` chooses among the candidates; None when none is chosen."""
        with self.guarded.writing("cannot claim a task") as conn:
            candidates = [Candidate(r["id"], r["domain"], r["model"], r["priority"], r["waiting"])
                          for r in conn.execute(_CANDIDATES)]  # fmt: skip
            chosen = pick(candidates) if candidates else None
            if chosen is None:
                return None
            expires = self._clock() + lease_s
            self._move(conn, chosen.id, "leased", ("queued",), "claimed", held_by=None,
                       sets={"attempts": "attempts + 1", "lease_holder": holder, "lease_expires": expires,
                             "run_id": None})  # fmt: skip
            row = conn.execute("SELECT * FROM queue_tasks WHERE id = ?", (chosen.id,)).fetchone()
        return Claim(row["id"], row["task"], row["domain"], row["spec"], row["model"], row["priority"],
                     row["attempts"], row["max_attempts"], holder, expires)  # fmt: skip

    def start(self, task_id: int, holder: str) -> bool:
        """leased -> running; False when ``holder`` no longer holds the lease."""
        with self.guarded.writing(f"cannot start queued task {task_id}") as conn:
            return self._move(conn, task_id, "running", ("leased",), "running", held_by=holder)

    def attach_run(self, task_id: int, holder: str, run_id: str) -> bool:
        """Record the learning run of the current attempt before it starts; False if the lease is gone."""
        with self.guarded.writing(f"cannot record run {run_id} of queued task {task_id}") as conn:
            row = conn.execute("SELECT attempts FROM queue_tasks WHERE id = ? AND state = 'running'"
                               " AND lease_holder = ?", (task_id, holder)).fetchone()  # fmt: skip
            if row is None:
                return False
            conn.execute("INSERT INTO queue_runs (run_id, task, attempt) VALUES (?, ?, ?)",
                         (run_id, task_id, row["attempts"]))  # fmt: skip
            conn.execute("UPDATE queue_tasks SET run_id = ? WHERE id = ?", (run_id, task_id))
        return True

    def heartbeat(self, holder: str, task_ids: Sequence[int], lease_s: float) -> set[int]:
        """Extend ``holder``'s leases on ``task_ids``; return the ids it still holds."""
        if not task_ids:
            return set()
        marks = ", ".join("?" * len(task_ids))
        where = f"id IN ({marks}) AND lease_holder = ? AND state IN ('leased', 'running')"
        with self.guarded.writing("cannot extend leases") as conn:
            conn.execute(f"UPDATE queue_tasks SET lease_expires = ? WHERE {where}",
                         (self._clock() + lease_s, *task_ids, holder))  # fmt: skip
            rows = conn.execute(f"SELECT id FROM queue_tasks WHERE {where}", (*task_ids, holder)).fetchall()
        return {row["id"] for row in rows}

    def finish(self, task_id: int, holder: str, state: str, outcome: str, score: float | None,
               note: str | None) -> bool:  # fmt: skip
        """running -> succeeded | failed | exhausted, once, by the lease holder only."""
        if state not in RESULT_STATES:
            raise IllegalTransition(f"finish needs one of {', '.join(RESULT_STATES)}, not {state!r}")
        with self.guarded.writing(f"cannot finish queued task {task_id}") as conn:
            done = self._move(conn, task_id, state, ("running",), note, held_by=holder,
                              sets={"outcome": outcome, "score": score, **_NO_LEASE})
            if done:
                conn.execute(_CLOSE_RUNS, (task_id,))
        return done

    def release(self, task_id: int, holder: str, note: str, *, charge: bool = True) -> str | None:
        """Give a held task back: queued, or dead when its attempts are spent; None if not held.

        ``charge=False`` (the runner was stopped, the task did nothing wrong) refunds the attempt.
        """
        with self.guarded.writing(f"cannot release queued task {task_id}") as conn:
            row = conn.execute("SELECT state, attempts, max_attempts FROM queue_tasks WHERE id = ?"
                               " AND lease_holder = ?", (task_id, holder)).fetchone()  # fmt: skip
            if row is None or row["state"] not in ACTIVE_STATES:
                return None
            target = "dead" if charge and row["attempts"] >= row["max_attempts"] else "queued"
            sets = dict(_NO_LEASE) if charge else {**_NO_LEASE, "attempts": "attempts - 1"}
            self._move(conn, task_id, target, (row["state"],), note, held_by=holder, sets=sets)
            conn.execute(_CLOSE_RUNS, (task_id,))
        return target

    # -- recovery ------------------------------------------------------------------------

    def active_leases(self) -> list[Lease]:
        rows = self._rows("SELECT id, task, state, lease_holder, lease_expires, run_id, attempts, max_attempts"
                          " FROM queue_tasks WHERE state IN ('leased', 'running') ORDER BY id")  # fmt: skip
        return [Lease(*tuple(r)) for r in rows]

    def take_over(self, lease: Lease, note: str, adopt: Adopted | None = None) -> str | None:
        """End a lapsed lease exactly as seen in ``lease``; return the new state, None if it changed meanwhile."""
        if adopt is not None and adopt.state not in RESULT_STATES:
            raise IllegalTransition(f"cannot adopt state {adopt.state!r}")
        if adopt is not None and lease.state == "running":
            target, sets = adopt.state, {"outcome": adopt.outcome, "score": adopt.score, **_NO_LEASE}
            note = f"{note}; adopted the finished run {lease.run_id}"
        else:
            target = "dead" if lease.attempts >= lease.max_attempts else "queued"
            sets = dict(_NO_LEASE)
        with self.guarded.writing(f"cannot take over queued task {lease.id}") as conn:
            changed = conn.execute(
                "SELECT 1 FROM queue_tasks WHERE id = ? AND state = ? AND lease_holder IS ? AND lease_expires IS ?",
                (lease.id, lease.state, lease.holder, lease.expires)).fetchone() is None  # fmt: skip
            if changed:
                return None
            self._move(conn, lease.id, target, (lease.state,), note, held_by=lease.holder, sets=sets)
            if target in RESULT_STATES:
                # Only an adopted run is known to be finished; a dead task's run stays open
                # so that unfinished_runs() lists it and the runner records it interrupted.
                conn.execute(_CLOSE_RUNS, (lease.id,))
        return target

    def unfinished_runs(self) -> list[str]:
        """Open runs whose attempt is over: not the current run of a task that is still active."""
        rows = self._rows(
            "SELECT r.run_id FROM queue_runs r JOIN queue_tasks t ON t.id = r.task WHERE r.open = 1"
            " AND NOT (t.state IN ('leased', 'running') AND t.run_id IS r.run_id) ORDER BY r.rowid")
        return [row["run_id"] for row in rows]

    def close_run(self, run_id: str) -> None:
        with self.guarded.writing(f"cannot close run {run_id}") as conn:
            conn.execute("UPDATE queue_runs SET open = 0 WHERE run_id = ?", (run_id,))

    # -- user commands -------------------------------------------------------------------

    def cancel(self, task_id: int) -> QueueTask:
        """Cancel a queued or active task (a runner holding it stops at its next heartbeat)."""
        return self._command(task_id, "cancelled", ("queued", *ACTIVE_STATES), "cancelled by user", _NO_LEASE)

    def retry(self, task_id: int) -> QueueTask:
        """Put a failed, exhausted, cancelled or dead task back, with fresh attempts and no stored answers."""
        task = self._command(task_id, "queued", RETRYABLE_STATES, "retried by user",
                             {"attempts": 0, "outcome": None, "score": None, "run_id": None})  # fmt: skip
        with self.guarded.writing(f"cannot clear the answers of queued task {task_id}") as conn:
            conn.execute("DELETE FROM queue_answers WHERE task = ?", (task_id,))
        return task

    # -- stored answers ------------------------------------------------------------------

    def answer(self, task_id: int, key: str) -> StoredAnswer | None:
        rows = self._rows(f"SELECT {_ANSWER_COLUMNS} FROM queue_answers WHERE task = ? AND key = ?", (task_id, key))
        return StoredAnswer(*tuple(rows[0])) if rows else None

    def save_answer(self, task_id: int, key: str, answer: StoredAnswer) -> None:
        """Store an answer durably (committed before this returns); a key already stored is kept."""
        with self.guarded.writing(f"cannot store an answer of queued task {task_id}") as conn:
            conn.execute(
                f"INSERT INTO queue_answers (task, key, {_ANSWER_COLUMNS}, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (task, key) DO NOTHING",
                (task_id, key, answer.model, answer.text, answer.prompt_tokens, answer.completion_tokens,
                 answer.finish_reason, answer.first_token_s, answer.total_s, self._ts()))  # fmt: skip

    def answer_count(self, task_id: int | None = None) -> int:
        where, params = ("WHERE task = ?", (task_id,)) if task_id is not None else ("", ())
        return int(self._rows(f"SELECT COUNT(*) FROM queue_answers {where}", params)[0][0])

    # -- reads ---------------------------------------------------------------------------

    def get(self, task_id: int) -> QueueTask | None:
        rows = self._rows(f"SELECT {_TASK_COLUMNS} FROM queue_tasks WHERE id = ?", (task_id,))
        return QueueTask(**dict(rows[0])) if rows else None

    def spec(self, task_id: int) -> str:
        rows = self._rows("SELECT spec FROM queue_tasks WHERE id = ?", (task_id,))
        if not rows:
            raise QueueTaskNotFound(f"no queued task with id {task_id}")
        return str(rows[0][0])

    def queued(self) -> list[Candidate]:
        """Every queued task as its own candidate, oldest first."""
        rows = self._rows("SELECT id, domain, model, priority, 1 FROM queue_tasks WHERE state = 'queued' ORDER BY id")
        return [Candidate(*tuple(r)) for r in rows]

    def tasks(self, states: Iterable[str] | None = None) -> list[QueueTask]:
        wanted = tuple(states) if states is not None else QUEUE_STATES
        marks = ", ".join("?" * len(wanted))
        sql = f"SELECT {_TASK_COLUMNS} FROM queue_tasks WHERE state IN ({marks}) ORDER BY id"
        return [QueueTask(**dict(r)) for r in self._rows(sql, wanted)]

    def counts(self) -> dict[str, int]:
        """Tasks per state, every state present."""
        found = {r[0]: r[1] for r in self._rows("SELECT state, COUNT(*) FROM queue_tasks GROUP BY state")}
        return {state: int(found.get(state, 0)) for state in QUEUE_STATES}

    def transitions(self, task_id: int | None = None) -> list[Transition]:
        where, params = ("WHERE task = ?", (task_id,)) if task_id is not None else ("", ())
        columns = "id, task, from_state, to_state, ts, holder, attempt, note"
        sql = f"SELECT {columns} FROM queue_transitions {where} ORDER BY id"
        return [Transition(*tuple(r)) for r in self._rows(sql, params)]

    def runs_of(self, task_id: int) -> list[str]:
        """The learning run of every attempt of the task that got as far as starting one."""
        return [r[0] for r in self._rows("SELECT run_id FROM queue_runs WHERE task = ? ORDER BY rowid", (task_id,))]

    def durability(self) -> dict[str, Any]:
        """The journal mode and synchronous level every commit runs under."""
        return {name: self._rows(f"PRAGMA {name}")[0][0] for name in ("journal_mode", "synchronous")}

    def integrity_check(self) -> str:
        return str(self._rows("PRAGMA integrity_check")[0][0])

    # -- plumbing ------------------------------------------------------------------------

    def _command(self, task_id: int, target: str, allowed: tuple[str, ...], note: str,
                 sets: dict[str, Any]) -> QueueTask:  # fmt: skip
        with self.guarded.writing(f"cannot move queued task {task_id} to {target}") as conn:
            row = conn.execute("SELECT state, lease_holder FROM queue_tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                raise QueueTaskNotFound(f"no queued task with id {task_id}")
            if row["state"] not in allowed:
                raise QueueCommandRefused(f"task {task_id} is {row['state']}; only {', '.join(allowed)} tasks"
                                          f" can become {target}")
            self._move(conn, task_id, target, (row["state"],), note, held_by=row["lease_holder"], sets=sets)
        task = self.get(task_id)
        assert task is not None
        return task

    def _move(self, conn: sqlite3.Connection, task_id: int, to: str, frm: tuple[str, ...], note: str | None, *,
              held_by: str | None, sets: dict[str, Any] | None = None) -> bool:  # fmt: skip
        """One state change, checked here and again by the database's trigger.

        ``held_by``: the lease holder the row must have (None: any).
        """
        for state in frm:
            if not is_legal(state, to):
                raise IllegalTransition(f"queue transition {state} -> {to} is not allowed")
        assignments, params = _assignments({"state": to, "note": note, "updated_ts": self._ts(), **(sets or {})})
        marks = ", ".join("?" * len(frm))
        where = f"id = ? AND state IN ({marks})" + (" AND lease_holder = ?" if held_by is not None else "")
        extra = (held_by,) if held_by is not None else ()
        sql = f"UPDATE queue_tasks SET {assignments} WHERE {where}"
        return conn.execute(sql, (*params, task_id, *frm, *extra)).rowcount == 1

    def _ts(self) -> str:
        return self.guarded.clock().isoformat(timespec="microseconds")

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self.guarded.rows(sql, params)  # "cannot read the queue" when it fails


_NO_LEASE: dict[str, Any] = {"lease_holder": None, "lease_expires": None}
_SQL_EXPRESSIONS = frozenset({"attempts + 1", "attempts - 1"})


def _assignments(values: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """``col = ?`` pairs; the few arithmetic expressions the store itself uses are inlined."""
    parts, params = [], []
    for column, value in values.items():
        if isinstance(value, str) and value in _SQL_EXPRESSIONS and column == "attempts":
            parts.append(f"{column} = {value}")
        else:
            parts.append(f"{column} = ?")
            params.append(value)
    return ", ".join(parts), tuple(params)
