"""The feedback loop (seed C): typed feedback per agent and operation, kept in the learning database.

An *agent* is a model (or one of the loop's own parts, DESIGN decision 7); an *operation*
is one thing it did, e.g. ``RUN_ID:ITERATION``.  Every entry has one of the seed's eight
types and six sources and a score 0..1 (a user's 1-5 rating is stored as (rating-1)/4).
Entries are append-only; the per-(agent, type) aggregates are folded forward in the same
transaction as each insert, so they always equal a scan of the entries.  Callbacks
registered with :meth:`FeedbackLoop.on_feedback` run after the commit; one that raises is
logged and the others still run.

:class:`FeedbackLoop` is the only code that speaks SQL to the feedback tables (migration 7);
it shares the :class:`~kisystem.store.learning.LearningStore`'s connection and lock.  Pattern
detection (:mod:`kisystem.improve.patterns`) and learning generation
(:mod:`kisystem.improve.learnings`) are pure functions over what it reads.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kisystem.config import FeedbackSettings
from kisystem.errors import UsageError
from kisystem.improve import learnings as learning_rules
from kisystem.improve import patterns as pattern_rules
from kisystem.improve.learnings import Learning
from kisystem.improve.patterns import DetectedPattern
from kisystem.store import base
from kisystem.store.learning import LearningStore, RunRecord
from kisystem.store.migrations import FEEDBACK_SOURCES, FEEDBACK_TYPES
from kisystem.store.times import iso as _iso, iso_opt as _iso_opt, parse as _parse

log = logging.getLogger(__name__)

RATING_RANGE = (1, 5)
RUN_PREFIX_MIN = 6  # shortest run id prefix `feedback rate` accepts
LESSON_MAX_AGE_DAYS = 30  # learnings not regenerated for this long are left out of lessons
DEFAULT_LESSON_CHARS = 600

FeedbackCallback = Callable[["FeedbackEntry"], None]


@dataclass(frozen=True)
class FeedbackEntry:
    """One row of ``feedback_entries``; ``score`` is 0..1 for every type."""

    id: int
    ts: datetime
    agent_id: str
    operation_id: str
    type: str
    score: float
    source: str
    details: dict[str, Any] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        """``name`` from the context, else from the details (callers put e.g. error_type in either)."""
        value = self.context.get(name)
        return self.details.get(name) if value is None else value

    @property
    def domain(self) -> str | None:
        return self.get("domain")


@dataclass(frozen=True)
class ScoreAggregate:
    """The kept aggregate of one agent's feedback of one type."""

    agent_id: str
    type: str
    count: int
    score_sum: float
    min_score: float | None
    max_score: float | None
    last_score: float | None
    last_ts: datetime | None

    @property
    def mean(self) -> float | None:
        return self.score_sum / self.count if self.count else None


@dataclass(frozen=True)
class TypeSummary:
    count: int
    mean: float


@dataclass(frozen=True)
class FeedbackSummary:
    """One agent's feedback over the last ``days`` days (seed: ``get_agent_summary``)."""

    agent_id: str
    days: int
    entries: int
    by_type: dict[str, TypeSummary]
    by_source: dict[str, int]
    by_domain: dict[str, int]
    success_rate: float | None  # successes / (successes + failures), any source
    first_ts: datetime | None
    last_ts: datetime | None
    patterns: list[DetectedPattern]

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id, "days": self.days, "entries": self.entries,
            "by_type": {t: {"count": s.count, "mean": round(s.mean, 4)} for t, s in self.by_type.items()},
            "by_source": self.by_source, "by_domain": self.by_domain,
            "success_rate": None if self.success_rate is None else round(self.success_rate, 4),
            "first_ts": _iso_opt(self.first_ts), "last_ts": _iso_opt(self.last_ts),
            "patterns": [p.to_dict() for p in self.patterns],
        }  # fmt: skip


# -- validation ---------------------------------------------------------------------------


def stored_score(type: str, score: Any) -> float:
    """The 0..1 score stored for ``score`` of ``type``; UsageError naming what is wrong and allowed."""
    if type not in FEEDBACK_TYPES:
        raise UsageError(f"unknown feedback type {type!r} (allowed: {', '.join(FEEDBACK_TYPES)})")
    if type == "user_rating":
        return rating_score(score)
    value = _number(score, f"{type} score")
    if type == "failure" and value != 0:
        raise UsageError(f"failure score {score!r} is not allowed (a failure's score is always 0)")
    if not 0.0 <= value <= 1.0:
        raise UsageError(f"{type} score {score!r} is out of range (allowed: 0..1)")
    return value


def rating_score(rating: Any) -> float:
    """A user's 1-5 rating as 0..1: (rating - 1) / 4."""
    lo, hi = RATING_RANGE
    value = _number(rating, "rating")
    if not value.is_integer() or not lo <= value <= hi:
        raise UsageError(f"rating {rating!r} is not allowed (allowed: a whole number {lo}..{hi})")
    return (value - lo) / (hi - lo)


def check_source(source: str) -> None:
    if source not in FEEDBACK_SOURCES:
        raise UsageError(f"unknown feedback source {source!r} (allowed: {', '.join(FEEDBACK_SOURCES)})")


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UsageError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{what} must be a non-empty string, got {value!r}")
    return value


def _json_object(value: Mapping[str, Any] | None, what: str) -> str:
    if value is None:
        return "{}"
    if not isinstance(value, Mapping):
        raise UsageError(f"feedback {what} must be a mapping (a JSON object), got {type(value).__name__}")
    return json.dumps(dict(value), default=str, ensure_ascii=False, sort_keys=True)


def _dimensions(dimensions: Mapping[str, Any] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, value in (dimensions or {}).items():
        number = _number(value, f"quality dimension {name!r}")
        if not 0.0 <= number <= 1.0:
            raise UsageError(f"quality dimension {name!r} = {value!r} is out of range (allowed: 0..1)")
        out[str(name)] = number
    return out


# -- SQL ----------------------------------------------------------------------------------

_ENTRY_COLUMNS = "id, ts, agent_id, operation_id, type, score, source, details, context"

_INSERT_ENTRY = (
    "INSERT INTO feedback_entries (ts, agent_id, operation_id, type, score, source, details, context)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)

_UPSERT_AGGREGATE = """
INSERT INTO feedback_aggregates (agent_id, type, count, score_sum, min_score, max_score, last_score, last_ts)
VALUES (?, ?, 1, ?, ?, ?, ?, ?)
ON CONFLICT (agent_id, type) DO UPDATE SET
    count = count + 1,
    score_sum = score_sum + excluded.score_sum,
    min_score = MIN(min_score, excluded.min_score),
    max_score = MAX(max_score, excluded.max_score),
    last_score = CASE WHEN excluded.last_ts >= last_ts THEN excluded.last_score ELSE last_score END,
    last_ts = MAX(last_ts, excluded.last_ts)
"""

_AGGREGATE_COLUMNS = "agent_id, type, count, score_sum, min_score, max_score, last_score, last_ts"

# The reference for the kept aggregates: the same numbers from every entry.
_AGGREGATE_SCAN = """
SELECT agent_id, type, COUNT(*), SUM(score), MIN(score), MAX(score),
    (SELECT e2.score FROM feedback_entries e2 WHERE e2.agent_id = e.agent_id AND e2.type = e.type
     ORDER BY e2.ts DESC, e2.id DESC LIMIT 1),
    MAX(ts)
FROM feedback_entries e {where} GROUP BY agent_id, type ORDER BY agent_id, type
"""

_UPSERT_PATTERN = """
INSERT INTO feedback_patterns (agent_id, pattern_type, key, domain, description, frequency, total, confidence,
    first_ts, last_ts, detected_ts, lookback_days, details)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (agent_id, pattern_type, key) DO UPDATE SET
    domain = excluded.domain, description = excluded.description, frequency = excluded.frequency,
    total = excluded.total, confidence = excluded.confidence, first_ts = excluded.first_ts,
    last_ts = excluded.last_ts, detected_ts = excluded.detected_ts, lookback_days = excluded.lookback_days,
    details = excluded.details
RETURNING id
"""

_PATTERN_COLUMNS = ("id, pattern_type, agent_id, key, domain, description, frequency, total, confidence,"
                    " first_ts, last_ts, details")

_UPSERT_LEARNING = """
INSERT INTO feedback_learnings (agent_id, learning_type, key, domain, title, description, impact, pattern_ids,
    created_ts, updated_ts)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (agent_id, learning_type, key) DO UPDATE SET
    domain = excluded.domain, title = excluded.title, description = excluded.description,
    impact = excluded.impact, pattern_ids = excluded.pattern_ids, updated_ts = excluded.updated_ts
RETURNING id
"""

_LEARNING_COLUMNS = "id, learning_type, agent_id, key, domain, title, description, impact, pattern_ids, updated_ts"


class FeedbackLoop:
    """Records, aggregates and reads feedback; finds patterns and learnings in it.

    ``settings`` are the config's ``feedback`` section (thresholds of pattern detection).
    """

    def __init__(self, store: LearningStore, settings: FeedbackSettings | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.settings = settings or FeedbackSettings()
        # The store's connection and lock: one connection per process, one write lock.
        self.guarded = store.guarded
        self._clock = clock or store.guarded.clock
        self._callbacks: list[FeedbackCallback] = []

    # -- recording ----------------------------------------------------------------------

    def record_feedback(self, agent_id: str, operation_id: str, type: str, score: float,
                        details: Mapping[str, Any] | None, source: str,
                        context: Mapping[str, Any] | None = None) -> FeedbackEntry:
        """Validate and store one entry, update its aggregate in the same transaction, then
        call the callbacks.  ``user_rating`` takes the 1-5 rating as ``score``."""
        agent_id = _name(agent_id, "agent id")
        operation_id = _name(operation_id, "operation id")
        value = stored_score(type, score)
        check_source(source)
        details_json, context_json = _json_object(details, "details"), _json_object(context, "context")
        now = _iso(self._clock())
        with self.guarded.writing(f"cannot record {type} feedback for {agent_id}") as conn:
            cursor = conn.execute(_INSERT_ENTRY, (now, agent_id, operation_id, type, value, source,
                                                  details_json, context_json))
            conn.execute(_UPSERT_AGGREGATE, (agent_id, type, value, value, value, value, now))
        entry = FeedbackEntry(cursor.lastrowid, _parse(now), agent_id, operation_id, type, value, source,
                              json.loads(details_json), json.loads(context_json))
        self._notify(entry)
        return entry

    def record_success(self, agent_id: str, operation_id: str, details: Mapping[str, Any] | None = None,
                       score: float = 1.0, *, source: str = "agent",
                       context: Mapping[str, Any] | None = None) -> FeedbackEntry:
        return self.record_feedback(agent_id, operation_id, "success", score, details, source, context)

    def record_failure(self, agent_id: str, operation_id: str, details: Mapping[str, Any] | None = None,
                       error_type: str | None = None, *, source: str = "agent",
                       context: Mapping[str, Any] | None = None) -> FeedbackEntry:
        merged = {**(details or {}), **({"error_type": error_type} if error_type else {})}
        return self.record_feedback(agent_id, operation_id, "failure", 0.0, merged, source, context)

    def record_quality_score(self, agent_id: str, operation_id: str, quality_score: float,
                             dimensions: Mapping[str, float] | None = None, *, source: str = "guardian",
                             context: Mapping[str, Any] | None = None) -> FeedbackEntry:
        """A quality score 0..1 and, optionally, its dimensions (each 0..1), e.g. readability."""
        details = {"dimensions": _dimensions(dimensions)} if dimensions else {}
        return self.record_feedback(agent_id, operation_id, "quality_score", quality_score, details, source,
                                    context)

    def record_user_rating(self, agent_id: str, operation_id: str, rating: int, comment: str | None = None,
                           *, context: Mapping[str, Any] | None = None) -> FeedbackEntry:
        """A user's rating 1-5 (stored as 0..1, the rating itself kept in the details)."""
        details: dict[str, Any] = {"rating": rating}
        if comment:
            details["comment"] = comment
        return self.record_feedback(agent_id, operation_id, "user_rating", rating, details, "user", context)

    def rate_run(self, run_ref: str, rating: int, comment: str | None = None) -> FeedbackEntry:
        """A user's rating of a finished run: for the model it ended on, operation ``RUN_ID:ITER``."""
        run = self.find_run(run_ref)
        if run.outcome == "running":
            raise UsageError(f"run {run.run_id} is still running: rate it when it has finished")
        context = {"domain": run.domain, "task": run.task, "run_id": run.run_id, "outcome": run.outcome}
        return self.record_user_rating(run.model, f"{run.run_id}:{run.iter}", rating, comment, context=context)

    def on_feedback(self, callback: FeedbackCallback) -> None:
        """Call ``callback(entry)`` after each entry is committed; an exception in it is logged."""
        self._callbacks.append(callback)

    def _notify(self, entry: FeedbackEntry) -> None:
        for callback in list(self._callbacks):
            try:
                callback(entry)
            except Exception as err:  # one observer's bug must not lose the others' calls or the caller's
                log.warning("feedback callback %s failed on entry %d: %s: %s",
                            getattr(callback, "__name__", repr(callback)), entry.id, type(err).__name__, err)
                log.debug("feedback callback traceback", exc_info=True)

    # -- reads --------------------------------------------------------------------------

    def entries(self, agent_id: str | None = None, *, since: datetime | None = None,
                types: Sequence[str] | None = None) -> list[FeedbackEntry]:
        """Entries oldest first, optionally of one agent, since a time, of some types."""
        where, params = _filters(agent_id, since, types)
        sql = f"SELECT {_ENTRY_COLUMNS} FROM feedback_entries {where} ORDER BY ts, id"
        return [_entry(row) for row in self._rows(sql, params)]

    def entries_for_operation(self, operation_id: str) -> list[FeedbackEntry]:
        sql = f"SELECT {_ENTRY_COLUMNS} FROM feedback_entries WHERE operation_id = ? ORDER BY ts, id"
        return [_entry(row) for row in self._rows(sql, (operation_id,))]

    def aggregates(self, agent_id: str | None = None) -> list[ScoreAggregate]:
        """The kept per-(agent, type) aggregates: a few rows, no scan of the entries."""
        where, params = _filters(agent_id, None, None)
        sql = f"SELECT {_AGGREGATE_COLUMNS} FROM feedback_aggregates {where} ORDER BY agent_id, type"
        return [_aggregate(row) for row in self._rows(sql, params)]

    def aggregates_scan(self, agent_id: str | None = None) -> list[ScoreAggregate]:
        """:meth:`aggregates` computed from every entry (the reference)."""
        where, params = _filters(agent_id, None, None)
        return [_aggregate(row) for row in self._rows(_AGGREGATE_SCAN.format(where=where), params)]

    def agents(self) -> list[str]:
        """Every agent with feedback, by name."""
        return [row[0] for row in self._rows("SELECT DISTINCT agent_id FROM feedback_aggregates ORDER BY 1")]

    def require_agent(self, agent_id: str) -> str:
        """``agent_id`` if it has feedback, else a UsageError naming the agents that do."""
        known = self.agents()
        if agent_id in known:
            return agent_id
        listed = ", ".join(known[:10]) + (" ..." if len(known) > 10 else "") if known else "none yet"
        raise UsageError(f"no feedback recorded for agent {agent_id!r} (agents with feedback: {listed})")

    def find_run(self, run_ref: str) -> RunRecord:
        """The run whose id is ``run_ref`` or starts with it (at least RUN_PREFIX_MIN characters)."""
        run = self.store.get_run(run_ref)
        if run is not None:
            return run
        ids = self._matching_runs(run_ref) if len(run_ref) >= RUN_PREFIX_MIN else []
        if len(ids) == 1:
            return self.store.get_run(ids[0])
        if len(ids) > 1:
            raise UsageError(f"run id prefix {run_ref!r} is ambiguous: {', '.join(ids)}; give more of it")
        raise UsageError(f"no run with id {run_ref!r} in the learning database {self.store.path} "
                         "(`kisystem run --json` shows run ids)")

    def _matching_runs(self, prefix: str) -> list[str]:
        # A range on the primary key instead of LIKE, which SQLite does not index case-sensitively.
        sql = "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? ORDER BY run_id LIMIT 3"
        return [row[0] for row in self._rows(sql, (prefix, prefix + "\U0010ffff"))]

    def summary(self, agent_id: str, days: int | None = None) -> FeedbackSummary:
        """``agent_id``'s feedback over the last ``days`` days (default: the pattern window)."""
        days = days or self.settings.pattern_lookback_days
        entries = self.entries(agent_id, since=self._clock() - timedelta(days=days))
        by_type: dict[str, list[float]] = {}
        for e in entries:
            by_type.setdefault(e.type, []).append(e.score)
        outcomes = Counter(e.type for e in entries if e.type in ("success", "failure"))
        decided = outcomes["success"] + outcomes["failure"]
        return FeedbackSummary(
            agent_id=agent_id, days=days, entries=len(entries),
            by_type={t: TypeSummary(len(s), sum(s) / len(s)) for t, s in sorted(by_type.items())},
            by_source=dict(sorted(Counter(e.source for e in entries).items())),
            by_domain=dict(sorted(Counter(e.domain or "-" for e in entries).items())),
            success_rate=outcomes["success"] / decided if decided else None,
            first_ts=entries[0].ts if entries else None, last_ts=entries[-1].ts if entries else None,
            patterns=self.patterns(agent_id, since=self._clock() - timedelta(days=days)),
        )  # fmt: skip

    def stats(self, agent_id: str | None = None) -> dict[str, Any]:
        """Totals and the kept aggregates, per agent and type (seed: ``feedback_stats``)."""
        aggregates = self.aggregates(agent_id)
        return {
            "entries": sum(a.count for a in aggregates),
            "agents": len({a.agent_id for a in aggregates}),
            "aggregates": [_aggregate_dict(a) for a in aggregates],
        }

    def status(self) -> dict[str, Any]:
        """What the feedback tables hold (seed: ``feedback_status``)."""
        row = self._rows(
            "SELECT (SELECT COUNT(*) FROM feedback_entries), (SELECT COUNT(DISTINCT agent_id) FROM feedback_entries),"
            " (SELECT MAX(ts) FROM feedback_entries), (SELECT COUNT(*) FROM feedback_patterns),"
            " (SELECT COUNT(*) FROM feedback_learnings)")[0]  # fmt: skip
        by_source = dict(self._rows("SELECT source, COUNT(*) FROM feedback_entries GROUP BY source ORDER BY source"))
        by_type = dict(self._rows("SELECT type, SUM(count) FROM feedback_aggregates GROUP BY type ORDER BY type"))
        s = self.settings
        return {
            "entries": row[0], "agents": row[1], "last_feedback": row[2], "patterns": row[3], "learnings": row[4],
            "by_source": by_source, "by_type": by_type,
            "thresholds": {"min_frequency": s.pattern_min_frequency, "min_confidence": s.pattern_min_confidence,
                           "lookback_days": s.pattern_lookback_days},
        }  # fmt: skip

    # -- patterns and learnings ---------------------------------------------------------

    def detect_patterns(self, agent_id: str | None = None, lookback_days: int | None = None) -> list[DetectedPattern]:
        """The patterns in the last ``lookback_days`` days (default from config), stored and returned.

        A pattern found again updates its stored row (same agent, type and key)."""
        days = lookback_days or self.settings.pattern_lookback_days
        now = self._clock()
        found = pattern_rules.find_patterns(self.entries(agent_id, since=now - timedelta(days=days)),
                                            self.settings, days)
        ids = self._upsert_all("cannot store detected patterns", _UPSERT_PATTERN,
                               [_pattern_params(p, now, days) for p in found])
        return [p.with_id(i) for p, i in zip(found, ids, strict=True)]

    def patterns(self, agent_id: str | None = None, *, since: datetime | None = None) -> list[DetectedPattern]:
        """Stored patterns, last detected since ``since``, highest confidence first."""
        where, params = base.where(("agent_id = ?", agent_id), ("detected_ts >= ?", _iso_opt(since)))
        sql = f"SELECT {_PATTERN_COLUMNS} FROM feedback_patterns {where} ORDER BY confidence DESC, frequency DESC, id"
        return [_pattern(row) for row in self._rows(sql, params)]

    def generate_learnings(self, agent_id: str | None = None,
                           patterns: Sequence[DetectedPattern] | None = None) -> list[Learning]:
        """Learnings from ``patterns`` (default: those detected now for ``agent_id``), stored and returned."""
        if patterns is None:
            patterns = self.detect_patterns(agent_id)
        found = learning_rules.learnings_from(patterns, self.settings)
        now = self._clock()
        ids = self._upsert_all("cannot store learnings", _UPSERT_LEARNING, [_learning_params(x, now) for x in found])
        return [x.stored(i, now) for x, i in zip(found, ids, strict=True)]

    def learnings(self, agent_id: str | None = None, domain: str | None = None, *,
                  since: datetime | None = None) -> list[Learning]:
        """Stored learnings, highest impact first; ``domain`` also matches domain-less ones."""
        where, params = base.where(("agent_id = ?", agent_id), ("(domain = ? OR domain IS NULL)", domain),
                                   ("updated_ts >= ?", _iso_opt(since)))
        sql = f"SELECT {_LEARNING_COLUMNS} FROM feedback_learnings {where} ORDER BY impact DESC, id"
        return [_learning(row) for row in self._rows(sql, params)]

    def lessons_for(self, domain: str, model: str, max_chars: int = DEFAULT_LESSON_CHARS) -> str:
        """A short "lessons from earlier runs" text for ``model`` on ``domain`` tasks, at most
        ``max_chars`` characters ("" when there is none): the stored learnings of the last
        LESSON_MAX_AGE_DAYS days, highest impact first."""
        since = self._clock() - timedelta(days=LESSON_MAX_AGE_DAYS)
        return learning_rules.lessons_text(self.learnings(model, domain, since=since), max_chars)

    # -- plumbing -----------------------------------------------------------------------

    def _upsert_all(self, what: str, sql: str, rows: Sequence[tuple[Any, ...]]) -> list[int]:
        """Run ``sql`` (an upsert ending in ``RETURNING id``) for every row in one transaction; their ids."""
        with self.guarded.writing(what) as conn:
            return [conn.execute(sql, row).fetchone()[0] for row in rows]

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self.guarded.rows(sql, params, what="cannot read feedback from the learning database")


def _filters(agent_id: str | None, since: datetime | None,
             types: Sequence[str] | None) -> tuple[str, tuple[Any, ...]]:
    marks = ", ".join("?" * len(types or ()))
    return base.where(("agent_id = ?", agent_id), ("ts >= ?", _iso_opt(since)),
                      (f"type IN ({marks})", tuple(types) if types else None))


def _pattern_params(p: DetectedPattern, now: datetime, days: int) -> tuple[Any, ...]:
    return (
        p.agent_id, p.pattern_type, p.key, p.domain, p.description, p.frequency, p.total,
        p.confidence, _iso(p.first_ts), _iso(p.last_ts), _iso(now), days, _dump(p.details),
    )  # fmt: skip


def _learning_params(item: Learning, now: datetime) -> tuple[Any, ...]:
    return (
        item.agent_id, item.learning_type, item.key, item.domain, item.title, item.description,
        item.impact, json.dumps(list(item.pattern_ids)), _iso(now), _iso(now),
    )  # fmt: skip


def _entry(row: sqlite3.Row) -> FeedbackEntry:
    return FeedbackEntry(row[0], _parse(row[1]), row[2], row[3], row[4], row[5], row[6],
                         json.loads(row[7]), json.loads(row[8]))


def _aggregate(row: sqlite3.Row) -> ScoreAggregate:
    return ScoreAggregate(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                          _parse(row[7]) if row[7] else None)


def _aggregate_dict(a: ScoreAggregate) -> dict[str, Any]:
    return {
        "agent_id": a.agent_id, "type": a.type, "count": a.count,
        "mean": None if a.mean is None else round(a.mean, 4), "min": a.min_score, "max": a.max_score,
        "last": a.last_score, "last_ts": _iso_opt(a.last_ts),
    }  # fmt: skip


def _pattern(row: sqlite3.Row) -> DetectedPattern:
    return DetectedPattern(
        pattern_type=row["pattern_type"], agent_id=row["agent_id"], key=row["key"], domain=row["domain"],
        description=row["description"], frequency=row["frequency"], total=row["total"],
        confidence=row["confidence"], first_ts=_parse(row["first_ts"]), last_ts=_parse(row["last_ts"]),
        details=json.loads(row["details"]), id=row["id"],
    )  # fmt: skip


def _learning(row: sqlite3.Row) -> Learning:
    return Learning(
        learning_type=row["learning_type"], agent_id=row["agent_id"], key=row["key"], domain=row["domain"],
        title=row["title"], description=row["description"], impact=row["impact"],
        pattern_ids=tuple(json.loads(row["pattern_ids"])), id=row["id"], updated=_parse(row["updated_ts"]),
    )  # fmt: skip


def _dump(value: Mapping[str, Any]) -> str:
    return json.dumps(dict(value), default=str, ensure_ascii=False, sort_keys=True)


