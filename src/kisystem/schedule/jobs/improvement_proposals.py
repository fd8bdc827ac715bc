"""Improvement proposals (continuous, every 5 minutes): from feedback to kept configuration changes.

Each run: the feedback loop detects patterns (stored) and generates learnings from them
(stored); the optimization engine gathers the health window's inputs and finds the
opportunities; the strategy ``jobs.improvement_strategy`` (auto) turns them into plans, and
:func:`kisystem.improve.auto.auto_optimize` applies the LOW and MEDIUM ones copy-on-write,
validated by the routing replay and kept or rolled back, and stores the HIGH and CRITICAL
ones for approval (``kisystem optimize approve``).

It runs every five minutes, so it must not repeat itself: an opportunity whose plans are all
open already (proposed, awaiting approval) or were decided within
``jobs.proposal_cooldown_hours`` (24) is left out.  The replay validates on the newest
outcome table ``kisystem bench routing`` recorded, else on the learning database's own
history; with neither, LOW and MEDIUM plans are not applied (counted, with why).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from kisystem.config import OptimizationConfig
from kisystem.errors import KisystemError
from kisystem.improve.auto import auto_optimize
from kisystem.improve.feedback import FeedbackLoop
from kisystem.improve.health import HealthMonitor
from kisystem.improve.opportunities import describe, find, gather
from kisystem.improve.plans import Opportunity, Strategy, plans_for
from kisystem.improve.validate import ReplayValidator
from kisystem.improve.versions import OptimizationStore
from kisystem.models.inventory import Inventory
from kisystem.schedule.jobs.common import (
    bench_table,
    effective,
    history_table,
    opportunity_key,
    optimization_store,
    plan_json,
    recent_plans,
)
from kisystem.schedule.tasks import JobContext, JobResult

HISTORY_DAYS = 90  # the learning database's history a replay validates on, without a recorded table


def validator_for(ctx: JobContext, inventory: Inventory) -> tuple[ReplayValidator | None, str]:
    """The routing replay to validate plans on, and where its outcomes come from."""
    recorded = bench_table(ctx.paths.home)
    if recorded is not None:
        table, path = recorded
        return ReplayValidator(table), f"routing replay of {len(table.tasks)} tasks recorded in {path.name}"
    history = history_table(ctx.store, inventory, ctx.clock() - timedelta(days=HISTORY_DAYS))
    if history.table.tasks:
        return (ReplayValidator(history.table), f"routing replay of {len(history.table.tasks)} tasks of the "
                                                f"learning database's last {HISTORY_DAYS} days")
    return None, "no recorded outcomes (no `kisystem bench routing` table, no finished runs with iterations)"


def fresh(opportunities: Sequence[Opportunity], strategy: Strategy, configured: tuple[OptimizationConfig, Inventory],
          store: OptimizationStore, ctx: JobContext) -> tuple[list[Opportunity], int, int]:
    """The opportunities to plan now; and how many were planned lately (a plan of the same type, agent and
    domain is open or was decided within the cooldown), or have no remedy under ``strategy``.

    Keyed by the opportunity, not the change: a kept remedy (a shorter timeout) changes the
    configuration the next remedy is computed from, and must not be followed by another every
    five minutes before the first one has shown its effect."""
    cooldown = timedelta(hours=ctx.config.jobs.proposal_cooldown_hours)
    seen = {opportunity_key(p.opportunity) for p in recent_plans(store, ctx.clock(), cooldown)}
    keep, repeated, no_remedy = [], 0, 0
    for opp in opportunities:
        if not plans_for([opp], strategy, *configured):
            no_remedy += 1
        elif opportunity_key(opp) in seen:
            repeated += 1
        else:
            keep.append(opp)
    return keep, repeated, no_remedy


def improvement_proposals(ctx: JobContext) -> JobResult:
    strategy = Strategy.parse(ctx.config.jobs.improvement_strategy)
    with optimization_store(ctx) as store:
        config, inventory = configured = effective(ctx, store)
        feedback = FeedbackLoop(ctx.store, config.feedback, clock=ctx.clock)
        patterns = feedback.detect_patterns()
        learnings = feedback.generate_learnings(patterns=patterns)
        monitor = HealthMonitor(ctx.store, config, inventory, feedback, clock=ctx.clock)
        found = find(gather(monitor), config, inventory)
        todo, repeated, no_remedy = fresh(found, strategy, configured, store, ctx)
        validator, source = validator_for(ctx, inventory) if todo else (None, "nothing to validate")
        unvalidated = 0 if validator else sum(not o.severity.needs_approval for o in todo)
        if validator is None:
            todo = [o for o in todo if o.severity.needs_approval]
        outcomes = auto_optimize(store, ctx.config, ctx.inventory, todo, strategy,
                                 validator or _never, warn=ctx.log) if todo else []
    plans = [{**plan_json(o.plan), "kept": o.kept, "detail": o.result.detail if o.result else None}
             for o in outcomes]
    if not (patterns or found):
        return JobResult.skipped(f"no feedback patterns and no opportunities in the last "
                                 f"{config.health.lookback_days} days", learnings=len(learnings))
    result: dict[str, Any] = {
        "strategy": strategy.lower(),
        "patterns": len(patterns), "pattern_ids": [p.id for p in patterns],
        "learnings": len(learnings), "learning_ids": [item.id for item in learnings],
        "opportunities": [{"type": o.type, "severity": str(o.severity), "agent": o.agent, "domain": o.domain,
                           "summary": describe(o)} for o in found],
        "planned_lately": repeated, "without_remedy": no_remedy, "validation": source,
        "not_applied_unvalidated": unvalidated,
        "plans": plans,
        "applied_kept": [p["id"] for p in plans if p["status"] == "applied_kept"],
        "rolled_back": [p["id"] for p in plans if p["status"] == "rolled_back"],
        "awaiting_approval": [p["id"] for p in plans if p["status"] == "awaiting_approval"],
    }  # fmt: skip
    return JobResult("success", result)


def _never(before: Any, after: Any) -> Any:
    """The validator without recorded outcomes (only plans for approval get here, which it never sees)."""
    raise KisystemError("no recorded outcomes to validate on")
