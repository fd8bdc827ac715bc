"""Copy-on-write auto-optimization of the routing and tuning configuration.

Each plan is applied to a NEW configuration version (the active overlay plus the plan's
changes), which is not active while a validator compares the configuration before and
after.  Only a version that is better on the validator's metric is activated
("applied_kept"); any other stays stored, marked ``rolled_back``, and the active version
does not change.  Before and after figures, the decision and why are stored with the plan.
Plans of HIGH or CRITICAL severity are stored as ``awaiting_approval`` and applied only
by :func:`approve`; :func:`reject` closes them.  A plan no replay can judge (its changes are
not ``replayable``: a model's answer budget or context) is kept on approval without one,
once its version fits: the person who approved it decided.

``config`` and ``inventory`` are always the shipped configuration (as loaded from the
config file and the inventory); the active version's overlay is applied on top here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kisystem.config import OptimizationConfig
from kisystem.errors import KisystemError, UsageError
from kisystem.improve.overlay import Configured, Overlay
from kisystem.improve.plans import Opportunity, Plan, Strategy, plans_for
from kisystem.improve.versions import OptimizationStore, PlanResult, apply_active
from kisystem.models.inventory import Inventory

Warn = Callable[[str], None]
UNREPLAYED = "kept: no replay of recorded answers can show this change; the approval decides"


@dataclass(frozen=True)
class Validation:
    """A validator's verdict: the metric, its figures before and after, whether after is better, and why."""

    metric: str
    before: Mapping[str, float]
    after: Mapping[str, float]
    better: bool
    detail: str


Validator = Callable[[Configured, Configured], Validation]
"""(the configuration before, the configuration after) -> Validation."""


@dataclass(frozen=True)
class PlanOutcome:
    """A plan as stored after this step, and its result (None while it waits for approval)."""

    plan: Plan
    result: PlanResult | None = None

    @property
    def kept(self) -> bool:
        return self.result is not None and self.result.kept


def auto_optimize(store: OptimizationStore, config: OptimizationConfig, inventory: Inventory,
                  opportunities: Iterable[Opportunity], strategy: Strategy, validator: Validator,
                  warn: Warn | None = None) -> list[PlanOutcome]:
    """Plan ``opportunities`` with ``strategy``; apply, validate and keep or roll back each LOW/MEDIUM plan
    in turn (each on top of what the earlier ones kept); store HIGH/CRITICAL ones for approval."""
    effective = apply_active(config, inventory, store, warn)
    outcomes = []
    for plan in plans_for(opportunities, strategy, *effective):
        if plan.severity.needs_approval:
            outcomes.append(PlanOutcome(store.add_plan(plan, "awaiting_approval")))
        else:
            outcomes.append(apply_plan(store, config, inventory, store.add_plan(plan), validator, warn))
    return outcomes


def approve(store: OptimizationStore, plan_id: int, config: OptimizationConfig, inventory: Inventory,
            validator: Validator | None, warn: Warn | None = None) -> PlanOutcome:
    """Apply a plan that awaits approval, validated and kept or rolled back as any other; a plan no
    replay can judge is kept once its version fits (``validator`` may then be None)."""
    if validator is None and store.plan(plan_id).replayable:
        raise UsageError(f"plan {plan_id} is validated by a replay: give recorded outcomes to replay")
    # Claimed first (awaiting_approval -> proposed) so that two approvals cannot both apply it.
    plan = store.set_plan_status(plan_id, "proposed", ("awaiting_approval",))
    return apply_plan(store, config, inventory, plan, validator if plan.replayable else None, warn,
                      note="approved; ")


def reject(store: OptimizationStore, plan_id: int) -> Plan:
    """Close a plan that awaits approval without applying it."""
    return store.set_plan_status(plan_id, "rejected", ("awaiting_approval",))


def apply_plan(store: OptimizationStore, config: OptimizationConfig, inventory: Inventory, plan: Plan,
               validator: Validator | None, warn: Warn | None = None, note: str = "") -> PlanOutcome:
    """Copy-on-write: a new version from the active one plus ``plan``; kept only if the validator finds it better.

    ``validator`` None (only :func:`approve` passes it, for a plan no replay can judge): kept once it fits."""
    assert plan.id is not None, "a plan is stored before it is applied"
    parent = store.active()
    parent_id = parent.id if parent else None
    before = apply_active(config, inventory, store, warn)
    try:
        overlay = plan.apply_to(parent.overlay if parent else Overlay(), inventory)
    except UsageError as err:
        return _finish(store, PlanResult(plan.id, None, False, plan.metric, detail=f"{note}cannot apply: {err}"),
                       parent_id)
    version = store.add_version(overlay, parent_id, f"plan {plan.id}: {plan.describe()}", plan.id)
    result = _validated(plan.id, version.id, plan.metric, before, overlay, config, inventory, validator)
    return _finish(store, PlanResult(result.plan, result.version, result.kept, result.metric, result.before,
                                     result.after, note + result.detail), parent_id)


def _validated(plan_id: int, version: int, metric: str, before: Configured, overlay: Overlay,
               config: OptimizationConfig, inventory: Inventory, validator: Validator | None) -> PlanResult:
    try:
        after = overlay.apply(config, inventory)
    except UsageError as err:
        return PlanResult(plan_id, version, False, metric, detail=f"rolled back: the new version does not fit: {err}")
    if validator is None:
        return PlanResult(plan_id, version, True, metric, detail=UNREPLAYED)
    try:
        check = validator(before, after)
    except KisystemError as err:
        return PlanResult(plan_id, version, False, metric, detail=f"rolled back: validation failed: {err}")
    verdict = f"kept: better on {check.metric}" if check.better else f"rolled back: not better on {check.metric}"
    return PlanResult(plan_id, version, check.better, check.metric, check.before, check.after,
                      f"{verdict} ({check.detail})")


def _finish(store: OptimizationStore, result: PlanResult, parent: int | None) -> PlanOutcome:
    stored = store.finish_plan(result, parent)
    return PlanOutcome(store.plan(result.plan), stored)
