"""Health of an agent (a model, DESIGN decision 7): seed C's score 0..100, stored, with a trend.

    health = (success_rate·0.40 + response_time_score·0.25 + code_quality·0.20 + (1 − error_rate)·0.15)·100

over the runs that started in the last ``days`` days (config ``health.lookback_days``, 7):

``success_rate``
    Of the finished runs that tried the model (it started them or was escalated to; outcomes
    success, failed, exhausted), the share it solved: the meta-supervisor's evidence counting
    (DESIGN decision 2), so a model that always fails and escalates is not invisible.
``response_time_score``
    From the model's mean generation time t over its generations.  A generation's time is
    the ``seconds`` of the ``answer`` event that follows its ``generate`` event; in runs
    recorded before answer events existed, the time from ``generate`` to the next event,
    less the ``seconds`` that event reports for its own phase (a static-analysis ``review``,
    a build or a test).  The SLA S is the model's inventory
    ``timeout_s`` (the hard limit, where a generation is cut off) x ``health.sla_fraction``
    (0.5): score = 1 for t <= S, falling linearly to 0 at t = timeout_s.
``code_quality``
    The mean of the model's ``quality_score`` feedback (every source; static analysis is the
    ``guardian`` source) in the window.  Without any: ``health.unmeasured_quality`` (0.8, the
    quality bar of ``quality_issues``), and the component is listed as unmeasured.
``error_rate``
    Of the model's iterations (one ``score`` event each), the share that ended with an error
    (no code, a failed build or test, no answer).  It differs from 1 − success_rate: a model
    that solves every task on its second try has success_rate 1 and error_rate 0.5.

A model without timed generations (e.g. runs imported without events) gets the neutral
UNMEASURED_RESPONSE and UNMEASURED_ERROR_RATE (0.5) and is listed as unmeasured.  Without
any finished run in the window there is no score.

Trend: the new score against the mean of the ``health.trend_history`` (5) scores stored
before it for the same agent and window: ``improving`` when it is at least
``health.trend_points`` (5) points higher, ``declining`` when as much lower, else ``stable``
(also the first time, when there is nothing to compare with).
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kisystem.config import OptimizationConfig
from kisystem.errors import UsageError
from kisystem.improve.feedback import FeedbackLoop
from kisystem.models.inventory import Inventory
from kisystem.store import base
from kisystem.store.learning import (
    MODEL_EVIDENCE_OUTCOMES,
    LearningStore,
    attempted_models,
)
from kisystem.store.times import iso as _iso

WEIGHTS = {"success_rate": 0.40, "response_time_score": 0.25, "code_quality": 0.20, "error_rate": 0.15}
UNMEASURED_RESPONSE = 0.5
UNMEASURED_ERROR_RATE = 0.5
TRENDS: tuple[str, ...] = ("improving", "stable", "declining")


# -- the formula ----------------------------------------------------------------------------


def health_score(success_rate: float, response_time_score: float, code_quality: float, error_rate: float) -> float:
    """Seed C's health score, 0..100."""
    w = WEIGHTS
    return 100.0 * (success_rate * w["success_rate"] + response_time_score * w["response_time_score"]
                    + code_quality * w["code_quality"] + (1.0 - error_rate) * w["error_rate"])


def response_time_score(mean_s: float, sla_s: float, timeout_s: float) -> float:
    """1 up to the SLA, linearly down to 0 at the timeout (0 beyond it)."""
    if mean_s <= sla_s:
        return 1.0
    if timeout_s <= sla_s:
        return 0.0
    return max(0.0, (timeout_s - mean_s) / (timeout_s - sla_s))


def trend_of(score: float, earlier: Iterable[float], points: float) -> str:
    """improving / declining when ``score`` differs from the mean of ``earlier`` by ``points`` or more."""
    earlier = list(earlier)
    if not earlier:
        return "stable"
    change = score - sum(earlier) / len(earlier)
    if change >= points:
        return "improving"
    if change <= -points:
        return "declining"
    return "stable"


# -- measurements -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    """A finished run as the engine reads it (outcomes success, failed, exhausted)."""

    domain: str
    model: str  # the model it ended on
    outcome: str
    tried: tuple[str, ...]  # every model it tried, the ended one included


@dataclass(frozen=True)
class Iteration:
    """One generation of ``model``: its seconds (None: not timed) and whether it ended with an error
    (None: no ``score`` event of it)."""

    model: str
    domain: str
    seconds: float | None
    error: bool | None


@dataclass
class Tally:
    """What the runs and iterations of one model (optionally in one domain) add up to."""

    runs: int = 0
    successes: int = 0
    generations: int = 0
    gen_seconds: float = 0.0
    iterations: int = 0
    errors: int = 0

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.runs if self.runs else None

    @property
    def mean_generation_s(self) -> float | None:
        return self.gen_seconds / self.generations if self.generations else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.iterations if self.iterations else None


def tallies(runs: Iterable[RunRow], iterations: Iterable[Iteration]) -> dict[tuple[str, str], Tally]:
    """Per (model, domain): runs tried and solved, timed generations, iterations and errors."""
    out: dict[tuple[str, str], Tally] = defaultdict(Tally)
    for run in runs:
        for model in run.tried:
            t = out[(model, run.domain)]
            t.runs += 1
            t.successes += run.outcome == "success" and run.model == model
    for it in iterations:
        t = out[(it.model, it.domain)]
        if it.seconds is not None:
            t.generations += 1
            t.gen_seconds += it.seconds
        if it.error is not None:
            t.iterations += 1
            t.errors += it.error
    return dict(out)


def merged(parts: Iterable[Tally]) -> Tally:
    total = Tally()
    for t in parts:
        for name in ("runs", "successes", "generations", "gen_seconds", "iterations", "errors"):
            setattr(total, name, getattr(total, name) + getattr(t, name))
    return total


# -- the health record --------------------------------------------------------------------------


@dataclass(frozen=True)
class Health:
    """One computed health of an agent over ``days`` days, with its parts and trend."""

    agent: str
    days: int
    score: float
    success_rate: float
    response_time_score: float
    code_quality: float
    error_rate: float
    runs: int
    trend: str
    details: dict[str, Any] = field(default_factory=dict)  # measurements, SLA, unmeasured parts
    previous: float | None = None  # the mean of the earlier scores the trend compared with
    ts: datetime | None = None
    id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["score"] = round(self.score, 2)
        data["previous"] = None if self.previous is None else round(self.previous, 2)
        data["ts"] = self.ts.isoformat(timespec="seconds") if self.ts else None
        return data


@dataclass(frozen=True)
class NoHealth:
    """An agent without finished runs in the window: no score."""

    agent: str
    days: int
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "days": self.days, "score": None, "reason": self.reason}


_ITERATIONS = """
WITH ev AS (
    SELECT r.domain, e.kind, e.ts, e.payload,
        LEAD(e.ts) OVER w AS next_ts, LEAD(e.kind) OVER w AS next_kind, LEAD(e.payload) OVER w AS next_payload
    FROM run_events e JOIN runs r ON r.run_id = e.run_id
    WHERE r.ts >= ? AND r.ts < ? AND r.outcome != 'running'
    WINDOW w AS (PARTITION BY e.run_id ORDER BY e.id)
)
SELECT json_extract(payload, '$.model') AS model, domain, kind,
    CASE WHEN kind = 'generate' AND next_kind = 'answer' THEN json_extract(next_payload, '$.seconds')
         WHEN kind = 'generate' AND next_ts IS NOT NULL THEN
        MAX(0.0, (julianday(next_ts) - julianday(ts)) * 86400.0
                 - COALESCE(json_extract(next_payload, '$.seconds'), 0.0)) END AS seconds,
    CASE WHEN kind = 'score' THEN json_extract(payload, '$.error') IS NOT NULL END AS error
FROM ev WHERE kind IN ('generate', 'score')
"""

_INSERT_HEALTH = (
    "INSERT INTO health_history (ts, agent, days, score, success_rate, response_time_score, code_quality,"
    " error_rate, runs, trend, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class HealthMonitor:
    """Measures agents from the learning database, computes and stores their health.

    It shares the :class:`LearningStore`'s ``guarded`` connection (as the FeedbackLoop does) and
    owns the SQL over ``health_history`` and the engine's reads of ``runs`` and ``run_events``.
    """

    def __init__(self, store: LearningStore, config: OptimizationConfig, inventory: Inventory,
                 feedback: FeedbackLoop | None = None, clock: Callable[[], datetime] | None = None) -> None:
        self.store = store
        self.config = config
        self.settings = config.health
        self.inventory = inventory
        self.feedback = feedback or FeedbackLoop(store, config.feedback)
        self.guarded = store.guarded
        self._clock = clock or store.guarded.clock

    def now(self) -> datetime:
        return self._clock()

    # -- agents -----------------------------------------------------------------------------

    def agents(self) -> list[str]:
        """The inventory's models, then every other model that ran or has feedback, by name."""
        ran = {row[0] for row in self.guarded.rows("SELECT DISTINCT model FROM runs")}
        tried_lists = self.guarded.rows("SELECT DISTINCT models_tried FROM runs")
        ran |= {m for (tried,) in tried_lists for m in json.loads(tried)}
        extra = (ran | set(self.feedback.agents())) - set(self.inventory.models)
        return [*self.inventory.models, *sorted(extra)]

    def require_agent(self, agent: str) -> str:
        known = self.agents()
        if agent not in known:
            raise UsageError(f"unknown agent {agent!r} (agents: {', '.join(known) or 'none'})")
        return agent

    # -- reads --------------------------------------------------------------------------------

    def runs(self, since: datetime, until: datetime) -> list[RunRow]:
        """Finished runs (model evidence outcomes) that started in [since, until)."""
        marks = ", ".join("?" * len(MODEL_EVIDENCE_OUTCOMES))
        sql = (f"SELECT domain, model, outcome, models_tried FROM runs WHERE ts >= ? AND ts < ?"
               f" AND outcome IN ({marks}) ORDER BY ts")
        rows = self.guarded.rows(sql, (_iso(since), _iso(until), *MODEL_EVIDENCE_OUTCOMES))
        return [RunRow(r[0], r[1], r[2], attempted_models(r[1], json.loads(r[3]))) for r in rows]

    def iterations(self, since: datetime, until: datetime) -> list[Iteration]:
        """Every generation (timed) and iteration end (error or not) of runs started in [since, until)."""
        rows = self.guarded.rows(_ITERATIONS, (_iso(since), _iso(until)))
        return [Iteration(r[0], r[1], r[3], None if r[4] is None else bool(r[4]))
                for r in rows if r[0] is not None and (r[3] is not None or r[4] is not None)]

    def window(self, days: int | None = None, *, end: datetime | None = None) -> tuple[datetime, datetime]:
        days = days or self.settings.lookback_days
        end = end or self.now()
        return end - timedelta(days=days), end + timedelta(microseconds=1)

    def tallies(self, days: int | None = None, *, end: datetime | None = None) -> dict[tuple[str, str], Tally]:
        since, until = self.window(days, end=end)
        return tallies(self.runs(since, until), self.iterations(since, until))

    def sla(self, agent: str) -> tuple[float, float] | None:
        """(SLA seconds, timeout seconds) of a model of the inventory; None for another agent."""
        spec = self.inventory.models.get(agent)
        if spec is None:
            return None
        return spec.timeout_s * self.settings.sla_fraction, spec.timeout_s

    # -- health -------------------------------------------------------------------------------

    def compute(self, agent: str, days: int | None = None, *, record: bool = True) -> Health | NoHealth:
        """``agent``'s health over the last ``days`` days; stored in the history (with its trend) when
        ``record``."""
        days = days or self.settings.lookback_days
        since, _ = self.window(days)
        tally = merged(t for (model, _d), t in self.tallies(days).items() if model == agent)
        if not tally.runs:
            return NoHealth(agent, days, f"no finished runs of {agent} in the last {days} days")
        quality = [e.score for e in self.feedback.entries(agent, since=since, types=["quality_score"])]
        health = self._health(agent, days, tally, quality)
        return self._store(health) if record else health

    def _health(self, agent: str, days: int, tally: Tally, quality: list[float]) -> Health:
        unmeasured: list[str] = []
        sla = self.sla(agent)
        mean_s = tally.mean_generation_s
        if mean_s is None or sla is None:
            rts = UNMEASURED_RESPONSE
            unmeasured.append("response_time_score")
        else:
            rts = response_time_score(mean_s, *sla)
        code_quality = sum(quality) / len(quality) if quality else self.settings.unmeasured_quality
        if not quality:
            unmeasured.append("code_quality")
        error_rate = tally.error_rate
        if error_rate is None:
            error_rate = UNMEASURED_ERROR_RATE
            unmeasured.append("error_rate")
        success_rate = tally.success_rate or 0.0
        details = {
            "successes": tally.successes, "generations": tally.generations, "iterations": tally.iterations,
            "errors": tally.errors, "mean_generation_s": None if mean_s is None else round(mean_s, 3),
            "sla_s": None if sla is None else sla[0], "timeout_s": None if sla is None else sla[1],
            "quality_scores": len(quality), "unmeasured": unmeasured,
        }  # fmt: skip
        score = health_score(success_rate, rts, code_quality, error_rate)
        earlier = self.history(agent, days, limit=self.settings.trend_history)
        previous = sum(h.score for h in earlier) / len(earlier) if earlier else None
        return Health(agent, days, score, success_rate, rts, code_quality, error_rate, tally.runs,
                      trend_of(score, [h.score for h in earlier], self.settings.trend_points), details, previous)

    def _store(self, health: Health) -> Health:
        now = self.now()
        with self.guarded.writing(f"cannot store the health of {health.agent}") as conn:
            cur = conn.execute(_INSERT_HEALTH, (
                _iso(now), health.agent, health.days, round(health.score, 6), health.success_rate,
                health.response_time_score, health.code_quality, health.error_rate, health.runs, health.trend,
                json.dumps({**health.details, "previous": health.previous}, sort_keys=True),
            ))  # fmt: skip
        return Health(**{**asdict(health), "ts": now, "id": int(cur.lastrowid)})  # type: ignore[arg-type]

    def history(self, agent: str | None = None, days: int | None = None, *, limit: int | None = None) -> list[Health]:
        """Stored health scores, newest first (of one agent, of one window length, the newest ``limit``)."""
        where, params = base.where(("agent = ?", agent), ("days = ?", days))
        tail = " LIMIT ?" if limit is not None else ""
        sql = f"SELECT * FROM health_history {where} ORDER BY id DESC{tail}"
        return [_health(r) for r in self.guarded.rows(sql, (*params, *((limit,) if limit is not None else ())))]

    def latest(self) -> dict[str, Health]:
        """The newest stored health of every agent."""
        sql = "SELECT * FROM health_history WHERE id IN (SELECT MAX(id) FROM health_history GROUP BY agent) ORDER BY agent"
        return {r["agent"]: _health(r) for r in self.guarded.rows(sql)}


def _health(row: sqlite3.Row) -> Health:
    details = json.loads(row["details"])
    previous = details.pop("previous", None)
    return Health(row["agent"], row["days"], row["score"], row["success_rate"], row["response_time_score"],
                  row["code_quality"], row["error_rate"], row["runs"], row["trend"], details, previous,
                  datetime.fromisoformat(row["ts"]), row["id"])

