"""MetaSupervisor: which domains need attention and which model to start with (seed B §1).

It only reads the learning database.  Priority (DESIGN decision 1)::

    P(d) = w_f (1 - sr) + w_t / (1 + t) + w_c min(1, c / 20) + w_r R

with sr the domain's success rate, t its mean run time in seconds (a domain without any
timed run gets no time term), c its finished runs, and R = +0.1 after an error in the
last 3 days, else -0.1 after a success in the last day, else 0.  Model bias (decision 2):
the weighted success rate sum(w_i success_i) / n with w_i = exp(-age_i / 30 days), over
the runs that tried the model (see :class:`~kisystem.store.learning.ModelEvidence`); the
best model of a domain is recommended when its rate >= 0.65 and n >= 5.

By default both read the aggregates the store keeps; ``full_scan=True`` reads ``runs``
row by row instead (the benchmark's reference).  ``enable_meta_supervisor = false``
makes :meth:`next_priorities` and :meth:`recommend_model_bias` return nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kisystem.config import MetaSupervisorWeights, OptimizationConfig
from kisystem.errors import UsageError
from kisystem.store.learning import (
    ERROR_OUTCOMES,
    MODEL_EVIDENCE_OUTCOMES,
    Clock,
    DomainStats,
    LearningStore,
    ModelEvidence,
    RunTrail,
    attempted_models,
    decay_exponent,
    decay_mass,
    utc_now,
)

BIAS_MIN_RATE = 0.65
BIAS_MIN_RUNS = 5
COUNT_SATURATION = 20
ERROR_WINDOW = timedelta(days=3)
SUCCESS_WINDOW = timedelta(days=1)
RECENT_ERROR, RECENT_SUCCESS = 0.1, -0.1


class UnknownDomain(UsageError):
    """``explain_priority`` was asked about a domain without finished runs."""

    def __init__(self, domain: str, known: Iterable[str]) -> None:
        self.domain, self.known = domain, tuple(known)
        listed = ", ".join(self.known) or "none yet"
        super().__init__(f"no finished runs for domain {domain!r} (known domains: {listed})")


@dataclass(frozen=True)
class PriorityInputs:
    domain: str
    success_rate: float
    avg_time: float | None
    run_count: int
    recency: float


@dataclass(frozen=True)
class PriorityFactors:
    failure_contribution: float
    time_contribution: float
    count_contribution: float
    recency_boost: float

    @property
    def total(self) -> float:
        return self.failure_contribution + self.time_contribution + self.count_contribution + self.recency_boost


def priority_factors(sr: float, t: float | None, c: int, r: float,
                     weights: MetaSupervisorWeights = MetaSupervisorWeights()) -> PriorityFactors:  # fmt: skip
    """The four weighted terms of P(d); ``r`` is taken as given (the guide's example uses +0.05)."""
    return PriorityFactors(
        failure_contribution=weights.failure_weight * (1 - sr),
        time_contribution=0.0 if t is None else weights.time_weight / (1 + t),
        count_contribution=weights.count_weight * min(1.0, c / COUNT_SATURATION),
        recency_boost=weights.recency_weight * r,
    )


def priority(sr: float, t: float | None, c: int, r: float,
             weights: MetaSupervisorWeights = MetaSupervisorWeights()) -> float:  # fmt: skip
    """P(d) from its inputs: a pure function."""
    return priority_factors(sr, t, c, r, weights).total


def recency_boost(last_error: datetime | None, last_success: datetime | None, now: datetime) -> float:
    if last_error is not None and now - last_error < ERROR_WINDOW:
        return RECENT_ERROR
    if last_success is not None and now - last_success < SUCCESS_WINDOW:
        return RECENT_SUCCESS
    return 0.0


def explain(inputs: PriorityInputs, weights: MetaSupervisorWeights = MetaSupervisorWeights()) -> dict[str, Any]:
    """The guide's ``explain_priority`` dict for the given inputs."""
    f = priority_factors(inputs.success_rate, inputs.avg_time, inputs.run_count, inputs.recency, weights)
    return {
        "priority_score": f.total,
        "factors": {
            "failure_contribution": f.failure_contribution,
            "time_contribution": f.time_contribution,
            "count_contribution": f.count_contribution,
            "recency_boost": f.recency_boost,
        },
        "success_rate": inputs.success_rate,
        "avg_time": inputs.avg_time,
        "run_count": inputs.run_count,
    }


def best_models(evidence: Iterable[ModelEvidence]) -> dict[str, str]:
    """Per domain, the model with the highest weighted success rate that passes the gate."""
    best: dict[str, ModelEvidence] = {}
    for e in evidence:
        if e.weighted_success_rate < BIAS_MIN_RATE or e.runs < BIAS_MIN_RUNS:
            continue
        held = best.get(e.domain)
        if held is None or (e.weighted_success_rate, e.runs) > (held.weighted_success_rate, held.runs):
            best[e.domain] = e
    return {domain: e.model for domain, e in sorted(best.items())}


def inputs_of(stats: DomainStats, now: datetime) -> PriorityInputs:
    r = recency_boost(stats.last_error_ts, stats.last_success_ts, now)
    return PriorityInputs(stats.domain, stats.success_rate, stats.avg_time_s, stats.runs, r)


class MetaSupervisor:
    """Read-only analysis of the learning database; ``store=None`` means no history yet."""

    def __init__(self, store: LearningStore | None, config: OptimizationConfig | None = None,
                 clock: Clock = utc_now, *, full_scan: bool = False) -> None:  # fmt: skip
        self._store = store
        self._config = config or OptimizationConfig()
        self._clock = clock
        self._full_scan = full_scan

    @property
    def enabled(self) -> bool:
        return self._config.enable_meta_supervisor

    @property
    def weights(self) -> MetaSupervisorWeights:
        return self._config.meta_supervisor_weights

    def priority(self, sr: float, t: float | None, c: int, r: float) -> float:
        return priority(sr, t, c, r, self.weights)

    def domain_inputs(self) -> list[PriorityInputs]:
        now = self._clock()
        return [inputs_of(s, now) for s in self._domain_stats()]

    def next_priorities(self, top_n: int = 5) -> list[tuple[str, float]]:
        """The ``top_n`` domains by P(d), highest first (ties by name)."""
        if not self.enabled or top_n <= 0:
            return []
        scored = [(i.domain, self._score(i)) for i in self.domain_inputs()]
        return sorted(scored, key=lambda pair: (-pair[1], pair[0]))[:top_n]

    def recommend_model_bias(self) -> dict[str, str]:
        """{domain: model} where the evidence is strong enough to replace the start model."""
        return best_models(self._evidence()) if self.enabled else {}

    def confidence(self, domain: str, model: str) -> float:
        """The model's weighted success rate in the domain; 0.0 without evidence."""
        found = [e for e in self._evidence(domain) if e.model == model]
        return found[0].weighted_success_rate if found else 0.0

    def evidence(self, domain: str | None = None) -> list[ModelEvidence]:
        """Per-(domain, model) evidence as of now, whether or not the supervisor is enabled."""
        return self._evidence(domain)

    def known_domains(self) -> list[str]:
        return [s.domain for s in self._domain_stats()]

    def explain_priority(self, domain: str) -> dict[str, Any]:
        """The guide's dict; raises :class:`UnknownDomain` for a domain without finished runs."""
        for inputs in self.domain_inputs():
            if inputs.domain == domain:
                return explain(inputs, self.weights)
        raise UnknownDomain(domain, self.known_domains())

    def get_statistics(self) -> dict[str, Any]:
        """Bias hit rate and average priority error from a replay of the history (a full scan).

        See :func:`replay_statistics` for the definitions.
        """
        trails = self._store.run_trails() if self._store is not None else []
        return {"enabled": self.enabled, **replay_statistics(trails, self.weights)}

    def _score(self, inputs: PriorityInputs) -> float:
        return self.priority(inputs.success_rate, inputs.avg_time, inputs.run_count, inputs.recency)

    def _domain_stats(self) -> list[DomainStats]:
        if self._store is None:
            return []
        return self._store.domain_stats() if self._full_scan else self._store.domain_aggregates()

    def _evidence(self, domain: str | None = None) -> list[ModelEvidence]:
        if self._store is None:
            return []
        read = self._store.model_evidence_scan if self._full_scan else self._store.model_evidence
        return read(domain, at=self._clock())


# -- statistics: a replay of the history ------------------------------------------------


def replay_statistics(trails: list[RunTrail],
                      weights: MetaSupervisorWeights = MetaSupervisorWeights()) -> dict[str, Any]:  # fmt: skip
    """Walk the runs in start order, knowing at each start only the runs finished by then.

    Bias hit rate: of the runs that started on the model the bias recommended at that
    moment (``models_tried[0]``), the share that model solved.  Runs with a
    recommendation that started elsewhere, and runs without one, are counted beside it.
    Only outcomes that speak about models count (success, failed, exhausted).

    Average priority error: for each run of a domain with earlier finished runs,
    |P(actual) - P(predicted)|, where P(predicted) is the domain's priority at the run's
    start and P(actual) is the same formula with the run's own result in place of the
    predicted ones (sr = 1 or 0, t = its wall time; c and R unchanged).  It is the
    weighted error of the predicted failure rate and solve time against what happened.
    """
    replay = _Replay(weights)
    finishes = sorted(trails, key=lambda r: r.ended_ts)
    learned = 0
    for run in trails:
        while learned < len(finishes) and finishes[learned].ended_ts < run.ts:
            replay.learn(finishes[learned])
            learned += 1
        replay.judge(run)
    return replay.summary(len(trails))


@dataclass
class _DomainState:
    runs: int = 0
    successes: int = 0
    wall_sum: float = 0.0
    wall_n: int = 0
    last_error: datetime | None = None
    last_success: datetime | None = None
    models: dict[str, list[float]] = field(default_factory=dict)  # model -> [n, decayed successes]

    def inputs(self, domain: str, now: datetime) -> PriorityInputs:
        avg = self.wall_sum / self.wall_n if self.wall_n else None
        return PriorityInputs(domain, self.successes / self.runs, avg, self.runs,
                              recency_boost(self.last_error, self.last_success, now))  # fmt: skip

    def recommendation(self, domain: str, now: datetime) -> str | None:
        scale = math.exp(-decay_exponent(now))
        evidence = (ModelEvidence(domain, m, int(n), 0, s * scale, 0.0) for m, (n, s) in self.models.items())
        return best_models(evidence).get(domain)


class _Replay:
    def __init__(self, weights: MetaSupervisorWeights) -> None:
        self.weights = weights
        self.domains: dict[str, _DomainState] = {}
        self.counts = dict.fromkeys(("followed", "hits", "ignored", "ignored_wins", "unbiased", "unbiased_wins"), 0)
        self.error_sum, self.error_n = 0.0, 0

    def learn(self, run: RunTrail) -> None:
        d = self.domains.setdefault(run.domain, _DomainState())
        d.runs += 1
        if run.outcome == "success":
            d.successes += 1
            d.last_success = _latest(d.last_success, run.ts)
        elif run.outcome in ERROR_OUTCOMES:
            d.last_error = _latest(d.last_error, run.ts)
        if run.wall_s is not None:
            d.wall_sum += run.wall_s
            d.wall_n += 1
        if run.outcome in MODEL_EVIDENCE_OUTCOMES:
            mass = decay_mass(run.ts)
            for m in attempted_models(run.model, run.models_tried):
                acc = d.models.setdefault(m, [0, 0.0])
                acc[0] += 1
                acc[1] += mass if run.outcome == "success" and m == run.model else 0.0

    def judge(self, run: RunTrail) -> None:
        d = self.domains.get(run.domain)
        if run.outcome in MODEL_EVIDENCE_OUTCOMES:
            self._judge_bias(run, d.recommendation(run.domain, run.ts) if d else None)
        if d is not None:
            self._judge_priority(run, d.inputs(run.domain, run.ts))

    def _judge_bias(self, run: RunTrail, recommended: str | None) -> None:
        solved = run.outcome == "success"
        first = (run.models_tried or (run.model,))[0]
        if recommended is None:
            self._count("unbiased", "unbiased_wins", solved)
        elif first == recommended:
            self._count("followed", "hits", solved and run.model == recommended)
        else:
            self._count("ignored", "ignored_wins", solved)

    def _count(self, total: str, wins: str, won: bool) -> None:
        self.counts[total] += 1
        self.counts[wins] += won

    def _judge_priority(self, run: RunTrail, p: PriorityInputs) -> None:
        actual_t = run.wall_s if run.wall_s is not None else p.avg_time
        actual_sr = 1.0 if run.outcome == "success" else 0.0
        predicted = priority(p.success_rate, p.avg_time, p.run_count, p.recency, self.weights)
        actual = priority(actual_sr, actual_t, p.run_count, p.recency, self.weights)
        self.error_sum += abs(actual - predicted)
        self.error_n += 1

    def summary(self, runs: int) -> dict[str, Any]:
        c = self.counts
        return {
            "runs": runs,
            "bias_hit_rate": _ratio(c["hits"], c["followed"]),
            "bias": {
                "followed": c["followed"], "hits": c["hits"],
                "ignored": c["ignored"], "ignored_success_rate": _ratio(c["ignored_wins"], c["ignored"]),
                "unbiased": c["unbiased"], "unbiased_success_rate": _ratio(c["unbiased_wins"], c["unbiased"]),
            },
            "avg_priority_error": _ratio(self.error_sum, self.error_n),
            "priority_error_runs": self.error_n,
        }  # fmt: skip


def _latest(held: datetime | None, ts: datetime) -> datetime:
    return ts if held is None or ts > held else held


def _ratio(part: float, whole: int) -> float | None:
    return part / whole if whole else None
