"""``get_escalation_stats``: escalations, stop-loss triggers and model effectiveness per domain (seed B,
"Success Metrics"), from the run events of the learning database.

Definitions (finished runs that started in the window; running ones are left out):

- escalations: ``escalate`` events, whatever moved the run on;
- stop-loss triggers: the times a model's stop-loss (fails, severity, stuck, DESIGN decision 3) fired:
  an ``escalate`` in an iteration that failed (not one whose model was skipped: a ``skip`` event of
  the same iteration means the backend lacked the model), plus an ``exhausted`` run whose last
  iteration was a scored failure (the stop-loss fired on the last model of the chain).  The log
  does not tell a hybrid capability-floor lift from a stop-loss escalation: both follow a failed
  iteration and both count here;
- escalated runs / recovered: runs with at least one such escalation, and of those the solved ones
  (the error recovery of the Phase 7 goals);
- model effectiveness, per (domain, model): attempts are the model's ``score`` events (every
  iteration that got as far as an answer or a generation error scores once), model-seconds the sum
  of its ``answer`` events' generation ``seconds``, solved the runs that ended solved on it; solved
  per attempt and per model-second are their ratios.  Runs without events (imported history) are
  counted apart and left out of the ratios, which they would only dilute.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kisystem.stats.common import Window, no_data, ratio
from kisystem.store.learning import LearningStore

RUNS_NEEDS = "finished runs in the learning database"
MODELS_NEED = "run events (score, answer) of finished runs"
_IN_WINDOW = "r.outcome != 'running' AND r.ts >= ?"
_ITERATION = "json_extract({alias}.payload, '$.iteration')"
_HAS_LOG = "EXISTS (SELECT 1 FROM run_events l WHERE l.run_id = r.run_id AND l.kind IN ('score', 'skip'))"

_RUNS = f"""
SELECT r.domain, COUNT(*) AS runs, SUM({_HAS_LOG}) AS logged
FROM runs r WHERE {_IN_WINDOW} GROUP BY r.domain
"""

# One row per escalate event: its run, and whether a skip of the same iteration caused it.
_ESCALATIONS = f"""
SELECT r.run_id, r.domain, r.outcome,
    EXISTS (SELECT 1 FROM run_events s WHERE s.run_id = e.run_id AND s.kind = 'skip'
            AND {_ITERATION.format(alias='s')} = {_ITERATION.format(alias='e')}) AS skipped
FROM run_events e JOIN runs r ON r.run_id = e.run_id
WHERE e.kind = 'escalate' AND {_IN_WINDOW}
"""

_EXHAUSTED_AFTER_FAILURE = f"""
SELECT r.domain, COUNT(*) FROM runs r
WHERE r.outcome = 'exhausted' AND r.ts >= ? AND EXISTS (
    SELECT 1 FROM run_events s WHERE s.run_id = r.run_id AND s.kind = 'score'
    AND {_ITERATION.format(alias='s')} = r.iter)
GROUP BY r.domain
"""

# "asked", not "model": in GROUP BY a bare name means runs.model (the model a run ended on) before an alias.
_MODEL_WORK = f"""
SELECT r.domain, json_extract(e.payload, '$.model') AS asked,
    SUM(e.kind = 'score') AS attempts,
    COALESCE(SUM(CASE WHEN e.kind = 'answer' THEN json_extract(e.payload, '$.seconds') END), 0.0) AS model_s
FROM run_events e JOIN runs r ON r.run_id = e.run_id
WHERE e.kind IN ('score', 'answer') AND {_IN_WINDOW}
GROUP BY r.domain, asked HAVING asked IS NOT NULL
"""

_SOLVED = f"""
SELECT r.domain, r.model, COUNT(*) FROM runs r
WHERE r.outcome = 'success' AND r.ts >= ? AND {_HAS_LOG}
GROUP BY r.domain, r.model
"""


@dataclass(frozen=True)
class ModelEffectiveness:
    """What one model did in one domain: attempts, generation seconds, runs it solved."""

    domain: str
    model: str
    attempts: int
    solved: int
    model_s: float

    @property
    def solved_per_attempt(self) -> float | None:
        return ratio(self.solved, self.attempts)

    @property
    def solved_per_model_s(self) -> float | None:
        return ratio(self.solved, self.model_s)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "attempts": self.attempts, "solved": self.solved, "model_s": round(self.model_s, 3),
            "solved_per_attempt": self.solved_per_attempt, "solved_per_model_s": self.solved_per_model_s,
            **({} if self.attempts else {"no_data": no_data("score events of this model's attempts")}),
        }  # fmt: skip


@dataclass(frozen=True)
class DomainEscalations:
    domain: str
    runs: int  # finished runs in the window
    logged_runs: int  # of those, runs with an event log (the rest were imported without events)
    escalations: int = 0
    stoploss_triggers: int = 0
    escalated_runs: int = 0  # runs escalated at least once after a failed iteration
    recovered: int = 0  # of those, solved
    models: tuple[ModelEffectiveness, ...] = ()

    @property
    def recovery_rate(self) -> float | None:
        return ratio(self.recovered, self.escalated_runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain, "runs": self.runs, "runs_with_events": self.logged_runs,
            "escalations": self.escalations, "stoploss_triggers": self.stoploss_triggers,
            "escalated_runs": self.escalated_runs, "recovered": self.recovered, "recovery_rate": self.recovery_rate,
            "models": [m.to_dict() for m in self.models],
        }  # fmt: skip


@dataclass(frozen=True)
class EscalationStats:
    window: Window
    domains: tuple[DomainEscalations, ...] = field(default_factory=tuple)

    def total(self, name: str) -> int:
        return sum(getattr(d, name) for d in self.domains)

    @property
    def recovery_rate(self) -> float | None:
        """Error recovery by stop-loss: the share of runs escalated after a failure that were then solved."""
        return ratio(self.total("recovered"), self.total("escalated_runs"))

    def to_dict(self) -> dict[str, Any]:
        totals = {name: self.total(name) for name in
                  ("runs", "logged_runs", "escalations", "stoploss_triggers", "escalated_runs", "recovered")}
        totals["runs_with_events"] = totals.pop("logged_runs")
        data: dict[str, Any] = {"window": self.window.to_dict(), "totals": {**totals,
                                "recovery_rate": self.recovery_rate}, "domains": [d.to_dict() for d in self.domains]}
        if not self.domains:
            data["no_data"] = no_data(RUNS_NEEDS)
        return data


def get_escalation_stats(store: LearningStore, window: Window) -> EscalationStats:
    """Escalations, stop-loss triggers and model effectiveness per domain over ``window``."""
    since = (window.since_iso,)
    counts = {row["domain"]: (row["runs"], row["logged"] or 0) for row in store.query(_RUNS, since)}
    escalation = _escalations(store.query(_ESCALATIONS, since))
    exhausted = {row[0]: row[1] for row in store.query(_EXHAUSTED_AFTER_FAILURE, since)}
    models = _models(store.query(_MODEL_WORK, since), {(r[0], r[1]): r[2] for r in store.query(_SOLVED, since)})
    domains = []
    for domain, (runs, logged) in sorted(counts.items()):
        e = escalation.get(domain, _Escalations())
        domains.append(DomainEscalations(
            domain, runs, logged, e.events, e.failed + exhausted.get(domain, 0), len(e.runs), len(e.recovered),
            tuple(models.get(domain, ()))))  # fmt: skip
    return EscalationStats(window, tuple(domains))


@dataclass
class _Escalations:
    events: int = 0
    failed: int = 0  # escalations after a failed iteration (not after a skip)
    runs: set[str] = field(default_factory=set)
    recovered: set[str] = field(default_factory=set)


def _escalations(rows: Iterable[Any]) -> dict[str, _Escalations]:
    by_domain: dict[str, _Escalations] = defaultdict(_Escalations)
    for row in rows:
        e = by_domain[row["domain"]]
        e.events += 1
        if row["skipped"]:
            continue
        e.failed += 1
        e.runs.add(row["run_id"])
        if row["outcome"] == "success":
            e.recovered.add(row["run_id"])
    return by_domain


def _models(rows: Iterable[Any], solved: dict[tuple[str, str], int]) -> dict[str, list[ModelEffectiveness]]:
    work = {(r["domain"], str(r["asked"])): (int(r["attempts"]), float(r["model_s"])) for r in rows}
    by_domain: dict[str, list[ModelEffectiveness]] = defaultdict(list)
    for domain, model in sorted(set(work) | set(solved)):
        attempts, model_s = work.get((domain, model), (0, 0.0))
        by_domain[domain].append(ModelEffectiveness(domain, model, attempts, solved.get((domain, model), 0), model_s))
    return by_domain
