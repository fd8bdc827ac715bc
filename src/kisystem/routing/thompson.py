"""Discounted Thompson sampling over (domain, model): which model a task starts on.

Evidence is one *stint*: a model's turn on a task (up to ``stoploss_per_model``
iterations), whether it solved the task and the seconds it spent.  Per (domain, model)
the policy keeps a Beta posterior of the stint's solve probability and a mean stint
cost.  Each stint is weighted by ``exp(-age / TAU_DAYS)``, so a model that changed
(new weights, new prompts) is re-learned within weeks instead of being judged by its
whole past.

To choose, it samples ``p ~ Beta`` for every model of the chain and starts where the
expected *solved tasks per second* is highest, counting the escalation that follows a
failed stint: starting at ``i`` solves with ``1 - prod(1 - p_j)`` over ``j >= i`` and
costs ``c_i + (1 - p_i) * (c_{i+1} + ...)``.  For the last model this is ``p / c``.

Evidence comes from the learning database (each run credits a failed stint to every
model it escalated away from and its outcome to the model it ended on) and from
:meth:`ThompsonPolicy.observe`, which the replay benchmark uses without a database.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from kisystem.loop.taskspec import TaskSpec
from kisystem.store.learning import Clock, LearningStore, RunRecord, utc_now

TAU_DAYS = 14.0  # a stint's weight halves in about 10 days
PRIOR_SOLVED = 1.0  # Beta(1, 1): no opinion before evidence
PRIOR_FAILED = 1.0
PRIOR_COST_S = 20.0  # one pseudo-stint of this length, the same for every model
PRIOR_COST_WEIGHT = 1.0
HISTORY_LIMIT = 1000  # newest runs per domain: bounds both the read (~30 ms) and how sure the posterior gets
SOLVED_OUTCOMES = frozenset({"success"})
FAILED_OUTCOMES = frozenset({"failed", "exhausted", "aborted"})  # crashes and interrupts teach nothing


@dataclass(frozen=True)
class Stint:
    domain: str
    model: str
    solved: bool
    seconds: float
    at: datetime


@dataclass(frozen=True)
class Posterior:
    """Discounted evidence of one (domain, model): Beta(alpha, beta) and mean stint seconds."""

    alpha: float
    beta: float
    cost_s: float

    @property
    def mean(self) -> float:
        return self.alpha / (self.alpha + self.beta)


History = Callable[[str], Iterable[Stint]]


class ThompsonPolicy:
    name = "thompson"

    def __init__(self, rng: random.Random | None = None, clock: Clock = utc_now,
                 history: History | None = None, tau_days: float = TAU_DAYS) -> None:
        self.rng = rng or random.Random()
        self.clock = clock
        self.history = history
        self.tau_days = tau_days
        self._observed: dict[str, list[Stint]] = defaultdict(list)

    @classmethod
    def from_store(cls, store: LearningStore, rng: random.Random | None = None,
                   clock: Clock = utc_now) -> ThompsonPolicy:
        """A policy that re-reads the domain's history from ``store`` at every choice."""
        return cls(rng, clock, history=lambda domain: store_stints(store, domain))

    def observe(self, domain: str, model: str, solved: bool, seconds: float) -> None:
        """Add one stint, timed now; for callers without a learning database."""
        self._observed[domain].append(Stint(domain, model, solved, seconds, self.clock()))

    def posterior(self, domain: str, model: str) -> Posterior:
        return self._posteriors(domain).get(model) or Posterior(PRIOR_SOLVED, PRIOR_FAILED, PRIOR_COST_S)

    def start_model(self, task: TaskSpec, chain: Sequence[str]) -> str:
        if not chain:
            raise ValueError(f"task {task.id}: empty chain")
        posteriors = self._posteriors(task.domain)
        prior = Posterior(PRIOR_SOLVED, PRIOR_FAILED, PRIOR_COST_S)
        sampled = [(self.rng.betavariate(p.alpha, p.beta), p.cost_s)
                   for p in (posteriors.get(m, prior) for m in chain)]
        rates = start_rates(sampled)
        return chain[max(range(len(chain)), key=lambda i: (rates[i], -i))]

    def _posteriors(self, domain: str) -> dict[str, Posterior]:
        stints = [*(self.history(domain) if self.history else ()), *self._observed.get(domain, ())]
        return posteriors(stints, self.clock(), self.tau_days)


def posteriors(stints: Iterable[Stint], now: datetime, tau_days: float = TAU_DAYS) -> dict[str, Posterior]:
    """Per model: prior plus the stints, each weighted by exp(-age / tau)."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])  # solved, failed, w*s, w
    for s in stints:
        age_days = max(0.0, (now - s.at).total_seconds() / 86400)
        w = math.exp(-age_days / tau_days)
        acc = sums[s.model]
        acc[0 if s.solved else 1] += w
        acc[2] += w * s.seconds
        acc[3] += w
    return {model: Posterior(PRIOR_SOLVED + sv, PRIOR_FAILED + fl,
                             (PRIOR_COST_S * PRIOR_COST_WEIGHT + ws) / (PRIOR_COST_WEIGHT + w))
            for model, (sv, fl, ws, w) in sums.items()}


def start_rates(models: Sequence[tuple[float, float]]) -> list[float]:
    """Expected solves per second when starting at each index of ``[(p, cost_s), ...]`` and escalating."""
    rates = [0.0] * len(models)
    solve, cost = 0.0, 0.0  # of starting just after index i
    for i in range(len(models) - 1, -1, -1):
        p, c = models[i]
        solve, cost = p + (1 - p) * solve, c + (1 - p) * cost
        rates[i] = solve / cost if cost > 0 else 0.0
    return rates


def store_stints(store: LearningStore, domain: str, limit: int = HISTORY_LIMIT) -> list[Stint]:
    """The domain's finished runs as stints; a run's wall time is split evenly over its models."""
    return [s for run in store.recent_runs(limit, domain) for s in run_stints(run)]


def run_stints(run: RunRecord) -> list[Stint]:
    outcome = str(run.outcome)
    if outcome not in SOLVED_OUTCOMES | FAILED_OUTCOMES:
        return []
    models = list(run.models_tried) or [run.model]
    seconds = (run.wall_s or 0.0) / len(models)
    last = len(models) - 1
    return [Stint(run.domain, m, i == last and outcome in SOLVED_OUTCOMES, seconds, run.ts)
            for i, m in enumerate(models)]
