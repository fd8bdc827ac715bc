"""The learning database: :class:`LearningStore` owns every SQL statement over it.

A run is inserted as ``running`` when it starts and updated once when it ends, so a
crash leaves a visible ``running`` row that :meth:`LearningStore.close_orphaned_runs`
later turns into ``interrupted``: at once when its owner (the writing process, recorded
in the row, see :mod:`kisystem.store.owner`) is a dead process of this host, after a
day when the owner cannot be judged from here.  ``run_events`` is an append-only log of what
happened during runs; the store itself appends ``started``, ``finished`` and
``interrupted`` events.  Timestamps are stored as fixed-width ISO-8601 UTC text, so
string order is time order.

Aggregates: ``domain_agg`` and ``domain_model_agg`` (migration 3) are folded forward in the
same transaction as every write that finishes a run (``finish_run``, ``mark_interrupted``,
``import_runs``), so the meta-supervisor reads a few small rows instead of scanning
``runs``.  Runs are never deleted or finished twice, so the aggregates only ever grow.
The full-scan reads (``domain_stats``, ``model_evidence_scan``) compute the same numbers
from ``runs`` and stay as the reference.

Time decay (DESIGN decision 2) with weight w = exp(-age / tau), tau = 30 days, is kept
exactly: a run starting at t adds exp((t - T0) / tau) to a sum, with T0 a fixed epoch
(:data:`DECAY_EPOCH`), and a read at ``now`` multiplies the sum by exp(-(now - T0) / tau).
Float range: exp overflows above ~709.8, so :func:`decay_mass` refuses start times more
than :data:`MAX_DECAY_EXPONENT` (600) tau after T0, i.e. after about 2074, leaving room
for sums of up to ~1e47 runs; runs long before T0 underflow to weight 0, as they should.
"""

from __future__ import annotations

import json
import math
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from kisystem.errors import StoreError
from kisystem.store import db, owner
from kisystem.store.base import GuardedStore
from kisystem.store.migrations import current_version
from kisystem.store.times import iso as _iso, parse as _parse, parse_opt as _parse_opt

Outcome = Literal["running", "success", "failed", "exhausted", "aborted", "error", "interrupted"]
Phase = Literal["BUILD", "TEST", "PROFILE", "GENERATE"]
ErrorType = Literal["COMPILATION", "RUNTIME", "PERFORMANCE", "LOGIC"]
Sandbox = Literal["bwrap", "unshare", "none"]

OUTCOMES: tuple[str, ...] = ("running", "success", "failed", "exhausted", "aborted", "error", "interrupted")
FINAL_OUTCOMES: tuple[str, ...] = OUTCOMES[1:]
ERROR_OUTCOMES: tuple[str, ...] = ("failed", "exhausted", "error")
"""Outcomes that count as an error for ``DomainStats.last_error_ts`` (the recency boost)."""
MODEL_EVIDENCE_OUTCOMES: tuple[str, ...] = ("success", "failed", "exhausted")
"""Outcomes that say something about the models tried: aborted (environment), error (a
crash of kisystem or its backend) and interrupted runs are no model's doing."""

DECAY_TAU_S = 30 * 86400.0
DECAY_EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
MAX_DECAY_EXPONENT = 600.0

Clock = Callable[[], datetime]
STALE_REASON = "no finish recorded (crash or kill)"


def utc_now() -> datetime:
    return datetime.now(UTC)


class RunAlreadyFinished(StoreError):
    """``finish_run`` was called for a run that is no longer ``running``."""


@dataclass(frozen=True)
class RunResult:
    """The final fields of a run, written once by :meth:`LearningStore.finish_run`.

    ``model`` is the model the run ended on; ``wall_s`` defaults to the time since start.
    """

    model: str
    iter: int
    score_final: float | None
    outcome: Outcome
    phase: Phase | None = None
    reason: str | None = None
    t_build: float = 0.0
    t_test: float = 0.0
    t_profile: float = 0.0
    tokens_prompt: int = 0
    tokens_completion: int = 0
    error_type: ErrorType | None = None
    models_tried: tuple[str, ...] = ()
    wall_s: float | None = None


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``."""

    run_id: str
    task: str
    domain: str
    model: str
    iter: int
    score_final: float | None
    outcome: Outcome
    phase: Phase | None
    reason: str | None
    t_build: float
    t_test: float
    t_profile: float
    ts: datetime
    ended_ts: datetime | None
    tokens_prompt: int
    tokens_completion: int
    error_type: ErrorType | None
    models_tried: tuple[str, ...]
    wall_s: float | None
    sandbox: Sandbox | None
    judge: str | None = None  # calls / compare (a trusted judge) or self-reported (untrusted)


@dataclass(frozen=True)
class RunEvent:
    """One row of ``run_events``."""

    id: int
    run_id: str
    ts: datetime
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DomainStats:
    """Finished runs of one domain (``running`` rows are left out)."""

    domain: str
    runs: int
    successes: int
    avg_time_s: float | None
    last_error_ts: datetime | None
    last_success_ts: datetime | None

    @property
    def success_rate(self) -> float:
        return self.successes / self.runs if self.runs else 0.0


@dataclass(frozen=True)
class ModelStats:
    """Finished runs of one model in one domain (by the model the run ended on)."""

    domain: str
    model: str
    runs: int
    successes: int
    avg_time_s: float | None


@dataclass(frozen=True)
class ModelEvidence:
    """What the finished runs of one domain say about one model, decayed to a read time.

    A run counts for every model it tried (``models_tried``, plus the model it ended on);
    it is a success only for the model it ended on, and only outcomes in
    :data:`MODEL_EVIDENCE_OUTCOMES` count.  ``weighted_*`` are sums of w = exp(-age/30 d).
    """

    domain: str
    model: str
    runs: int
    successes: int
    weighted_successes: float
    weighted_runs: float

    @property
    def weighted_success_rate(self) -> float:
        """DESIGN decision 2: sum of w_i * success_i over the raw count n."""
        return self.weighted_successes / self.runs if self.runs else 0.0


@dataclass(frozen=True)
class RunTrail:
    """One finished run reduced to what a replay of the meta-supervisor needs."""

    domain: str
    model: str
    outcome: Outcome
    ts: datetime
    ended_ts: datetime
    wall_s: float | None
    models_tried: tuple[str, ...]


@dataclass(frozen=True)
class ModelOutcome:
    """One finished run reduced to what the model-bias weighting needs."""

    domain: str
    model: str
    outcome: Outcome
    ts: datetime


_RUN_COLUMNS = (
    "run_id, task, domain, model, iter, score_final, outcome, phase, reason, t_build, t_test,"
    " t_profile, ts, ended_ts, tokens_prompt, tokens_completion, error_type, models_tried,"
    " wall_s, sandbox, judge"
)

_FINISH = """
UPDATE runs SET model = ?, iter = ?, score_final = ?, outcome = ?, phase = ?, reason = ?,
    t_build = ?, t_test = ?, t_profile = ?, ended_ts = ?, tokens_prompt = ?,
    tokens_completion = ?, error_type = ?, models_tried = ?, wall_s = ?
WHERE run_id = ?
"""

_AGGREGATES = """
COUNT(*) AS runs,
SUM(outcome = 'success') AS successes,
AVG(wall_s) AS avg_time_s
"""

_INSERT_RUN = f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES ({', '.join('?' * 21)})"

# Parameters: read time, tau in seconds, the evidence outcomes, then the domain filter's.
_MODEL_EVIDENCE_SCAN = """
WITH finished AS (
    SELECT run_id, domain, model, outcome = 'success' AS solved, models_tried,
        exp((julianday(ts) - julianday(?)) * 86400.0 / ?) AS w
    FROM runs WHERE outcome IN ({outcomes}) {where}
), tried AS (
    SELECT f.run_id, j.value AS m FROM finished f, json_each(f.models_tried) j
    UNION
    SELECT run_id, model FROM finished
)
SELECT f.domain, t.m, COUNT(*), SUM(f.solved AND f.model = t.m),
    SUM((f.solved AND f.model = t.m) * f.w), SUM(f.w)
FROM tried t JOIN finished f ON f.run_id = t.run_id
GROUP BY f.domain, t.m ORDER BY f.domain, t.m
"""

_UPSERT_DOMAIN = """
INSERT INTO domain_agg (domain, runs, successes, sum_wall_s, wall_n, last_error_ts, last_success_ts)
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (domain) DO UPDATE SET
    runs = runs + excluded.runs,
    successes = successes + excluded.successes,
    sum_wall_s = sum_wall_s + excluded.sum_wall_s,
    wall_n = wall_n + excluded.wall_n,
    last_error_ts = MAX(COALESCE(last_error_ts, excluded.last_error_ts),
                        COALESCE(excluded.last_error_ts, last_error_ts)),
    last_success_ts = MAX(COALESCE(last_success_ts, excluded.last_success_ts),
                          COALESCE(excluded.last_success_ts, last_success_ts))
"""

_UPSERT_MODEL = """
INSERT INTO domain_model_agg (domain, model, runs, successes, decayed_success_sum, decayed_run_sum)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (domain, model) DO UPDATE SET
    runs = runs + excluded.runs,
    successes = successes + excluded.successes,
    decayed_success_sum = decayed_success_sum + excluded.decayed_success_sum,
    decayed_run_sum = decayed_run_sum + excluded.decayed_run_sum
"""

_FOLD_COLUMNS = "domain, model, outcome, ts, wall_s, models_tried"


class LearningStore(GuardedStore):
    """All reads and writes of the learning database.

    One instance holds one connection (``guarded``); its lock serialises its use, so it may
    be shared by an asyncio thread and its worker threads, and by the feedback loop and
    health monitor built on this store.  Other processes open their own store.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock = utc_now) -> None:
        _ensure_exp(conn)
        self.guarded = db.Guarded(conn, path, clock, db.LEARNING_DB)

    @classmethod
    def open(cls, path: Path, *, clock: Clock = utc_now) -> LearningStore:
        """Open (creating if needed) the database at ``path`` and bring its schema up to date."""
        path = Path(path)
        return cls(db.open_migrated(path, db.LEARNING_DB), path, clock)

    def schema_version(self) -> int:
        with self.guarded.lock, db.translate("cannot read schema version"):
            return current_version(self.guarded.conn)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """The rows of one read of the learning database, under the store's lock (for other modules' reads)."""
        return self.guarded.rows(sql, params, what="cannot read learning database")

    # -- writes -------------------------------------------------------------------------

    def start_run(self, task: str, domain: str, model: str, sandbox: Sandbox | None = None,
                  *, run_id: str | None = None, judge: str | None = None) -> str:
        """Insert a ``running`` row and a ``started`` event; return the new run_id.

        ``run_id`` lets a caller record the id elsewhere before the row exists (the queue does).
        ``judge`` says who decides the result: ``calls``/``compare`` (a trusted judge) or
        ``self-reported`` (the program's own output: untrusted).
        """
        run_id = run_id or uuid.uuid4().hex
        now = self.guarded.clock()
        me = owner.this_process()
        with self.guarded.writing(f"cannot start run for task {task!r}") as conn:
            conn.execute(
                "INSERT INTO runs (run_id, task, domain, model, outcome, ts, sandbox, judge,"
                " owner_host, owner_boot, owner_pid, owner_started)"
                " VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                (run_id, task, domain, model, _iso(now), _value(sandbox), judge,
                 me.host, me.boot, me.pid, me.started),
            )
            started = {"task": task, "model": model, "sandbox": _value(sandbox)}
            _insert_event(conn, run_id, "started", {**started, "judge": judge} if judge else started, now)
        return run_id

    def append_event(self, run_id: str, kind: str, payload: dict[str, Any] | None = None) -> None:
        """Append one event to the run's log (non-JSON values are stored as their str)."""
        with self.guarded.writing(f"cannot append {kind!r} event to run {run_id}") as conn:
            _insert_event(conn, run_id, kind, payload or {}, self.guarded.clock())

    def finish_run(self, run_id: str, result: RunResult) -> None:
        """Write the run's final fields once; a second call raises :class:`RunAlreadyFinished`."""
        if _value(result.outcome) == "running":
            raise ValueError("finish_run needs a final outcome, not 'running'")
        now = self.guarded.clock()
        with self.guarded.writing(f"cannot finish run {run_id}") as conn:
            started = _running_since(conn, run_id)
            wall_s = result.wall_s if result.wall_s is not None else max(0.0, (now - started).total_seconds())
            payload = {"outcome": _value(result.outcome), "score_final": result.score_final}
            _insert_event(conn, run_id, "finished", payload, now)
            conn.execute(_FINISH, (*_finish_params(result, now, wall_s), run_id))
            _fold_where(conn, "run_id = ?", (run_id,))

    def mark_interrupted(self, older_than_s: float) -> list[str]:
        """Turn ``running`` rows started more than ``older_than_s`` ago into ``interrupted``."""
        now = self.guarded.clock()
        cutoff = _iso(now - timedelta(seconds=older_than_s))
        with self.guarded.writing("cannot mark stale runs interrupted") as conn:
            rows = conn.execute(
                "SELECT run_id FROM runs WHERE outcome = 'running' AND ts < ?", (cutoff,)
            ).fetchall()
            run_ids = [row["run_id"] for row in rows]
            for run_id in run_ids:
                conn.execute(
                    "UPDATE runs SET outcome = 'interrupted', ended_ts = ?,"
                    " reason = COALESCE(reason, ?) WHERE run_id = ?",
                    (_iso(now), STALE_REASON, run_id),
                )
                _insert_event(conn, run_id, "interrupted", {"older_than_s": older_than_s}, now)
                _fold_where(conn, "run_id = ?", (run_id,))
        return run_ids

    def interrupt_run(self, run_id: str, reason: str) -> bool:
        """Turn this one run into ``interrupted`` if it is still ``running``; True when it was."""
        now = self.guarded.clock()
        with self.guarded.writing(f"cannot mark run {run_id} interrupted") as conn:
            return _interrupt(conn, run_id, reason, now)

    def close_orphaned_runs(self, stale_after_s: float | None = None) -> list[str]:
        """Turn ``running`` rows whose writer is gone into ``interrupted``; return their run ids.

        A row owned by a process of this host is closed as soon as that process is dead
        (or the machine restarted since).  Rows that cannot be judged from here (owned by
        another host, or written before owners were recorded) are closed once they are
        older than ``stale_after_s``, when it is given.  Reads first: a store with nothing
        to close takes no write lock.
        """
        now = self.guarded.clock()
        orphans = self._orphans(owner.this_process(), now, stale_after_s)
        if not orphans:
            return []
        with self.guarded.writing("cannot close the runs of dead processes") as conn:
            return [run_id for run_id, reason in orphans if _interrupt(conn, run_id, reason, now)]

    def close_own_runs(self, reason: str) -> list[str]:
        """Turn this process's own ``running`` rows into ``interrupted``: its last act when a signal
        or a crash ends it, so that not even a run whose start the signal hit stays ``running``."""
        me = owner.this_process()
        rows = self.query("SELECT run_id FROM runs WHERE outcome = 'running' AND owner_host = ? AND owner_pid = ?"
                          " AND owner_started IS ?", (me.host, me.pid, me.started))  # fmt: skip
        if not rows:
            return []
        now = self.guarded.clock()
        with self.guarded.writing("cannot close this process's runs") as conn:
            return [row["run_id"] for row in rows if _interrupt(conn, row["run_id"], reason, now)]

    def _orphans(self, here: owner.Owner, now: datetime, stale_after_s: float | None) -> list[tuple[str, str]]:
        cutoff = _iso(now - timedelta(seconds=stale_after_s)) if stale_after_s is not None else None
        rows = self.query("SELECT run_id, ts, owner_host, owner_boot, owner_pid, owner_started FROM runs"
                          " WHERE outcome = 'running' ORDER BY ts, rowid")  # fmt: skip
        found = ((row["run_id"], _why_orphaned(row, here, cutoff)) for row in rows)
        return [(run_id, reason) for run_id, reason in found if reason is not None]

    def import_runs(self, records: Iterable[RunRecord]) -> int:
        """Insert finished runs as they are (no events), aggregates included, in one transaction.

        For bulk loads: benchmarks, replays, moving history between databases.
        """
        folder = _Fold()

        def params() -> Iterator[tuple[Any, ...]]:
            for r in records:
                if _value(r.outcome) == "running":
                    raise ValueError(f"import_runs takes finished runs only ({r.run_id} is running)")
                folder.add(r.domain, r.model, _value(r.outcome), _iso(r.ts), r.wall_s, r.models_tried)
                yield _record_params(r)

        with self.guarded.writing("cannot import runs") as conn:
            conn.executemany(_INSERT_RUN, params())
            folder.write(conn)
        return folder.count

    def rebuild_aggregates(self) -> None:
        """Recompute every aggregate from ``runs`` (a repair; normal writes keep them current)."""
        with self.guarded.writing("cannot rebuild aggregates") as conn:
            rebuild_aggregates(conn)

    # -- reads --------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord | None:
        rows = self.query(f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ?", (run_id,))
        return _record(rows[0]) if rows else None

    def recent_runs(self, limit: int = 20, domain: str | None = None) -> list[RunRecord]:
        """The newest runs first, optionally of one domain."""
        where, params = _domain_filter(domain, "WHERE")
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY ts DESC, rowid DESC LIMIT ?"
        return [_record(row) for row in self.query(sql, (*params, limit))]

    def events(self, run_id: str) -> list[RunEvent]:
        rows = self.query(
            "SELECT id, run_id, ts, kind, payload FROM run_events WHERE run_id = ? ORDER BY id", (run_id,)
        )
        return [RunEvent(r["id"], r["run_id"], _parse(r["ts"]), r["kind"], json.loads(r["payload"])) for r in rows]

    def domain_stats(self) -> list[DomainStats]:
        """Per-domain counts, mean wall time and the latest error and success start times."""
        marks = ", ".join("?" * len(ERROR_OUTCOMES))
        sql = (
            f"SELECT domain, {_AGGREGATES},"
            f" MAX(CASE WHEN outcome IN ({marks}) THEN ts END) AS last_error_ts,"
            " MAX(CASE WHEN outcome = 'success' THEN ts END) AS last_success_ts"
            " FROM runs WHERE outcome != 'running' GROUP BY domain ORDER BY domain"
        )
        return [_domain_stats(row) for row in self.query(sql, ERROR_OUTCOMES)]

    def model_stats(self, domain: str | None = None) -> list[ModelStats]:
        """Per-(domain, model) counts and mean wall time, e.g. for ETA estimates."""
        where, params = _domain_filter(domain, "AND")
        sql = (
            f"SELECT domain, model, {_AGGREGATES} FROM runs WHERE outcome != 'running' {where}"
            " GROUP BY domain, model ORDER BY domain, model"
        )
        return [
            ModelStats(r["domain"], r["model"], r["runs"], r["successes"], r["avg_time_s"])
            for r in self.query(sql, params)
        ]

    def model_outcomes(self, domain: str | None = None) -> list[ModelOutcome]:
        """Every finished run as (domain, model, outcome, ts), oldest first."""
        where, params = _domain_filter(domain, "AND")
        sql = (
            f"SELECT domain, model, outcome, ts FROM runs WHERE outcome != 'running' {where}"
            " ORDER BY domain, model, ts"
        )
        return [ModelOutcome(r["domain"], r["model"], r["outcome"], _parse(r["ts"])) for r in self.query(sql, params)]

    def domain_aggregates(self) -> list[DomainStats]:
        """:meth:`domain_stats` from the kept aggregates: a few rows, no scan of ``runs``."""
        sql = (
            "SELECT domain, runs, successes,"
            " CASE WHEN wall_n > 0 THEN sum_wall_s / wall_n END AS avg_time_s,"
            " last_error_ts, last_success_ts FROM domain_agg WHERE runs > 0 ORDER BY domain"
        )
        return [_domain_stats(row) for row in self.query(sql)]

    def model_evidence(self, domain: str | None = None, *, at: datetime | None = None) -> list[ModelEvidence]:
        """Per-(domain, model) evidence decayed to ``at`` (default: now), from the aggregates."""
        factor = _decay_factor(at or self.guarded.clock())
        where, params = _domain_filter(domain, "WHERE")
        sql = (
            "SELECT domain, model, runs, successes, decayed_success_sum, decayed_run_sum"
            f" FROM domain_model_agg {where} ORDER BY domain, model"
        )
        return [
            ModelEvidence(r[0], r[1], r[2], r[3], r[4] * factor, r[5] * factor)
            for r in self.query(sql, params)
        ]

    def model_evidence_scan(self, domain: str | None = None, *, at: datetime | None = None) -> list[ModelEvidence]:
        """:meth:`model_evidence` computed from every row of ``runs`` (the reference; slow at scale)."""
        where, params = _domain_filter(domain, "AND")
        sql = _MODEL_EVIDENCE_SCAN.format(outcomes=", ".join("?" * len(MODEL_EVIDENCE_OUTCOMES)), where=where)
        rows = self.query(sql, (_iso(at or self.guarded.clock()), DECAY_TAU_S, *MODEL_EVIDENCE_OUTCOMES, *params))
        return [ModelEvidence(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def run_trails(self) -> list[RunTrail]:
        """Every finished run, oldest start first (a full scan, for replays and statistics)."""
        sql = (
            "SELECT domain, model, outcome, ts, COALESCE(ended_ts, ts), wall_s, models_tried"
            " FROM runs WHERE outcome != 'running' ORDER BY ts, rowid"
        )
        return [
            RunTrail(r[0], r[1], r[2], _parse(r[3]), _parse(r[4]), r[5], tuple(json.loads(r[6])))
            for r in self.query(sql)
        ]

    def error_type_counts(self, domain: str | None = None) -> dict[str, int]:
        where, params = _domain_filter(domain, "AND")
        sql = f"SELECT error_type, COUNT(*) FROM runs WHERE error_type IS NOT NULL {where} GROUP BY error_type"
        return {row[0]: row[1] for row in self.query(sql, params)}


def _why_orphaned(row: sqlite3.Row, here: owner.Owner, cutoff: str | None) -> str | None:
    """Why a ``running`` row will never be finished by its writer; None while it may still be."""
    if row["owner_pid"] is not None and row["owner_host"] == here.host:
        # A process of this host is judged, never aged out: a live one is slow, not stale.
        held = owner.Owner(row["owner_host"], row["owner_boot"], row["owner_pid"], row["owner_started"])
        return owner.gone_because(held, here)
    if cutoff is not None and row["ts"] < cutoff:
        return STALE_REASON
    return None


def _interrupt(conn: sqlite3.Connection, run_id: str, reason: str, now: datetime) -> bool:
    changed = conn.execute(
        "UPDATE runs SET outcome = 'interrupted', ended_ts = ?, reason = COALESCE(reason, ?)"
        " WHERE run_id = ? AND outcome = 'running'",
        (_iso(now), reason, run_id),
    ).rowcount
    if changed:
        _insert_event(conn, run_id, "interrupted", {"reason": reason}, now)
        _fold_where(conn, "run_id = ?", (run_id,))
    return bool(changed)


def _running_since(conn: sqlite3.Connection, run_id: str) -> datetime:
    row = conn.execute("SELECT outcome, ts FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    if row is None:
        raise StoreError(f"no run with id {run_id}")
    if row["outcome"] != "running":
        raise RunAlreadyFinished(f"run {run_id} already finished as {row['outcome']!r}")
    return _parse(row["ts"])


def _insert_event(conn: sqlite3.Connection, run_id: str, kind: str, payload: dict[str, Any], now: datetime) -> None:
    conn.execute(
        "INSERT INTO run_events (run_id, ts, kind, payload) VALUES (?, ?, ?, ?)",
        (run_id, _iso(now), kind, json.dumps(payload, default=str, ensure_ascii=False)),
    )


def _finish_params(r: RunResult, now: datetime, wall_s: float) -> tuple[Any, ...]:
    return (
        r.model, r.iter, r.score_final, _value(r.outcome), _value(r.phase), r.reason,
        r.t_build, r.t_test, r.t_profile, _iso(now), r.tokens_prompt, r.tokens_completion,
        _value(r.error_type), json.dumps(list(r.models_tried)), wall_s,
    )  # fmt: skip


def _record(row: sqlite3.Row) -> RunRecord:
    values = dict(row)
    values["ts"] = _parse(values["ts"])
    values["ended_ts"] = _parse_opt(values["ended_ts"])
    values["models_tried"] = tuple(json.loads(values["models_tried"]))
    return RunRecord(**values)


def _domain_stats(row: sqlite3.Row) -> DomainStats:
    return DomainStats(
        row["domain"], row["runs"], row["successes"], row["avg_time_s"],
        _parse_opt(row["last_error_ts"]), _parse_opt(row["last_success_ts"]),
    )  # fmt: skip


def _domain_filter(domain: str | None, keyword: str) -> tuple[str, tuple[Any, ...]]:
    return (f"{keyword} domain = ?", (domain,)) if domain is not None else ("", ())


def _value(v: Any) -> Any:
    """Accept enum members (e.g. a loop's Phase enum) where the schema wants their text."""
    return getattr(v, "value", v)


# -- aggregates ---------------------------------------------------------------------------


def attempted_models(model: str, models_tried: Sequence[str]) -> tuple[str, ...]:
    """The models a run tried, in order, each once; the model it ended on is always among them."""
    return tuple(dict.fromkeys((*models_tried, model)))


def decay_exponent(ts: datetime) -> float:
    return (ts - DECAY_EPOCH).total_seconds() / DECAY_TAU_S


def decay_mass(ts: datetime) -> float:
    """exp((ts - T0) / tau): a run's contribution to the decayed sums."""
    exponent = decay_exponent(ts)
    if exponent > MAX_DECAY_EXPONENT:
        raise StoreError(f"run start {ts.isoformat()} is past the decay epoch's range (about 2074)")
    return math.exp(exponent)


def _decay_factor(at: datetime) -> float:
    try:
        return math.exp(-decay_exponent(at))
    except OverflowError as exc:
        raise StoreError(f"read time {at.isoformat()} is far before the decay epoch") from exc


def rebuild_aggregates(conn: sqlite3.Connection) -> None:
    """Recompute the aggregate tables from ``runs`` inside the caller's transaction."""
    conn.execute("DELETE FROM domain_agg")
    conn.execute("DELETE FROM domain_model_agg")
    _fold_where(conn, "outcome != 'running'", ())


def _fold_where(conn: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> None:
    folder = _Fold()
    for row in conn.execute(f"SELECT {_FOLD_COLUMNS} FROM runs WHERE {where}", params):
        folder.add(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]))
    folder.write(conn)


@dataclass
class _DomainSum:
    runs: int = 0
    successes: int = 0
    sum_wall_s: float = 0.0
    wall_n: int = 0
    last_error_ts: str | None = None
    last_success_ts: str | None = None


@dataclass
class _ModelSum:
    runs: int = 0
    successes: int = 0
    decayed_successes: float = 0.0
    decayed_runs: float = 0.0


def _later(a: str | None, b: str) -> str:
    return b if a is None or b > a else a


class _Fold:
    """The aggregate deltas of a batch of finished runs, written with one upsert per key."""

    def __init__(self) -> None:
        self.count = 0
        self.domains: dict[str, _DomainSum] = {}
        self.models: dict[tuple[str, str], _ModelSum] = {}

    def add(self, domain: str, model: str, outcome: str, ts: str, wall_s: float | None,
            models_tried: Sequence[str]) -> None:  # fmt: skip
        self.count += 1
        d = self.domains.setdefault(domain, _DomainSum())
        d.runs += 1
        if outcome == "success":
            d.successes += 1
            d.last_success_ts = _later(d.last_success_ts, ts)
        elif outcome in ERROR_OUTCOMES:
            d.last_error_ts = _later(d.last_error_ts, ts)
        if wall_s is not None:
            d.sum_wall_s += wall_s
            d.wall_n += 1
        if outcome in MODEL_EVIDENCE_OUTCOMES:
            self._add_evidence(domain, model, outcome == "success", decay_mass(_parse(ts)), models_tried)

    def _add_evidence(self, domain: str, model: str, solved: bool, mass: float, models_tried: Sequence[str]) -> None:
        for tried in attempted_models(model, models_tried):
            m = self.models.setdefault((domain, tried), _ModelSum())
            won = solved and tried == model
            m.runs += 1
            m.successes += won
            m.decayed_successes += mass if won else 0.0
            m.decayed_runs += mass

    def write(self, conn: sqlite3.Connection) -> None:
        conn.executemany(_UPSERT_DOMAIN, [
            (k, d.runs, d.successes, d.sum_wall_s, d.wall_n, d.last_error_ts, d.last_success_ts)
            for k, d in self.domains.items()
        ])  # fmt: skip
        conn.executemany(_UPSERT_MODEL, [
            (domain, model, m.runs, m.successes, m.decayed_successes, m.decayed_runs)
            for (domain, model), m in self.models.items()
        ])  # fmt: skip


def _ensure_exp(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("SELECT exp(0)")
    except sqlite3.OperationalError:  # SQLite built without its math functions
        conn.create_function("exp", 1, math.exp, deterministic=True)


def _record_params(r: RunRecord) -> tuple[Any, ...]:
    return (
        r.run_id, r.task, r.domain, r.model, r.iter, r.score_final, _value(r.outcome), _value(r.phase),
        r.reason, r.t_build, r.t_test, r.t_profile, _iso(r.ts), _iso(r.ended_ts) if r.ended_ts else None,
        r.tokens_prompt, r.tokens_completion, _value(r.error_type), json.dumps(list(r.models_tried)),
        r.wall_s, _value(r.sandbox), r.judge,
    )  # fmt: skip
