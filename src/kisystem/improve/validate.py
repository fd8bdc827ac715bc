"""Validating a configuration change by replaying recorded real outcomes (the routing replay).

:class:`ReplayValidator` runs every task of a recorded :class:`OutcomeTable` once under the
configuration before and once under the one after, as the loop would route it: from the
route's start along its chain, each model up to its own stop-loss (else the config's),
within the iteration budget, with the loop's hybrid floor (under the config's hybrid
weights) where the tasks' specs are given.  The metric is tasks solved, with the
model-seconds spent (generation, build and test of the samples used) as the tie-break:
after is better when it solves more, or as many in fewer seconds.

What the replay models of a configuration: routes (a model without recorded outcomes for
a domain is skipped, as the loop skips a model its backend lacks), per-model and default
stop-losses (up to the ``k`` samples recorded per model), generation timeouts (a sample
that took longer counts as a timed-out generation: a recoverable failure costing the
timeout), and the hybrid weights.  It does not model profiling: a two-tier threshold
change shows no difference on replay, so it is not kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace

from kisystem.bench.routing import OutcomeTable, Sample, TaskRun, hybrid_floor, own_stoplosses, simulate
from kisystem.config import OptimizationConfig
from kisystem.improve.auto import Validation
from kisystem.improve.overlay import Configured
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.inventory import Inventory

METRIC = "tasks solved, then model-seconds"
TIMED_OUT_SEVERITY = 3  # as a failed generation in the loop (Attempt.generation_failed)


@dataclass(frozen=True)
class ReplayFigures:
    tasks: int
    solved: int
    model_seconds: float

    def rank(self) -> tuple[int, float]:
        """Larger is better: more solved first, then fewer seconds."""
        return self.solved, -self.model_seconds


@dataclass(frozen=True)
class ReplayValidator:
    table: OutcomeTable
    specs: Mapping[str, TaskSpec] | None = None  # with them, the loop's hybrid floor runs too

    def __call__(self, before: Configured, after: Configured) -> Validation:
        was, now = self.figures(*before), self.figures(*after)
        skipped = sorted(set(unrecorded(self.table, after[1])) - set(unrecorded(self.table, before[1])))
        detail = (f"replay of {now.tasks} recorded tasks: solved {was.solved} -> {now.solved}, "
                  f"model-seconds {was.model_seconds:g} -> {now.model_seconds:g}")
        if skipped:
            detail += f"; no recorded outcomes, skipped: {', '.join(skipped)}"
        return Validation(METRIC, asdict(was), asdict(now), now.rank() > was.rank(), detail)

    def figures(self, config: OptimizationConfig, inventory: Inventory) -> ReplayFigures:
        runs = self.runs(config, inventory)
        return ReplayFigures(len(self.table.tasks), sum(r.solved for r in runs),
                             round(sum(r.cost_s for r in runs), 3))

    def runs(self, config: OptimizationConfig, inventory: Inventory) -> list[TaskRun]:
        """Each task's replayed run under the configuration (a task whose chain has no recorded model: none)."""
        table = routed_table(self.table, inventory)
        per_model = own_stoplosses(inventory, table.models)
        floor_for = hybrid_floor(config) if self.specs is not None else None
        runs = []
        for task in table.tasks:
            chain = table.chain(task)
            if chain:
                floor = floor_for(self.specs[task], chain) if floor_for and self.specs else None
                runs.append(simulate(table, task, chain[0], config.stoploss_per_model,
                                     config.max_optimization_iterations, floor, per_model))
        return runs


def routed_table(table: OutcomeTable, inventory: Inventory) -> OutcomeTable:
    """``table`` with each domain's chain taken from the inventory's route (recorded models only) and the
    inventory's generation timeouts applied to the samples."""
    chains = {d: _routed_chain(table, inventory, d) for d in table.chains}
    samples = {t: {m: tuple(_timed(s, inventory, m) for s in ss) for m, ss in per.items()}
               for t, per in table.samples.items()}
    return replace(table, chains=chains, samples=samples)


def unrecorded(table: OutcomeTable, inventory: Inventory) -> list[str]:
    """'model in domain' for each model of a route that the table has no outcomes of."""
    return [f"{m} in {d}" for d in table.chains if d in inventory.routes
            for m in inventory.route(d).chain if m not in table.chains[d]]


def _routed_chain(table: OutcomeTable, inventory: Inventory, domain: str) -> tuple[str, ...]:
    if domain not in inventory.routes:
        return tuple(table.chains[domain])
    recorded = set(table.chains[domain])
    return tuple(m for m in inventory.route(domain).chain if m in recorded)


def _timed(sample: Sample, inventory: Inventory, model: str) -> Sample:
    spec = inventory.models.get(model)
    if spec is None or sample.gen_s <= spec.timeout_s:
        return sample
    return Sample(False, 0.0, spec.timeout_s, severity=TIMED_OUT_SEVERITY, recoverable=True, error_type="RUNTIME")
