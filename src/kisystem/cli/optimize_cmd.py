"""`kisystem optimize ...`: optimization plans of the routing and tuning configuration.

``approve`` validates a plan that awaits approval by replaying recorded outcomes (the
routing bench's cache, or ``--outcomes FILE``) and keeps it only if it is better;
``reject`` closes it; ``history`` lists plans and what came of them.  The helpers at the
bottom are shared with ``kisystem config versions | rollback``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from kisystem.cli.context import AppContext, pass_app
from kisystem.errors import UsageError
from kisystem.improve.auto import approve as approve_plan
from kisystem.improve.auto import reject as reject_plan
from kisystem.improve.plans import Plan, change_to_json
from kisystem.improve.versions import ConfigVersion, OptimizationStore, PlanResult, UnknownPlan

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
OUTCOMES_GLOB = "routing-outcomes-*.json"


@click.group("optimize")
def optimize_group() -> None:
    """Plans that change kisystem's routing and tuning configuration (copy-on-write, validated, rolled back).

    A plan is applied to a new configuration version, validated by replaying recorded
    outcomes, and kept (made active) only if it solves more tasks, or as many in fewer
    model-seconds; otherwise the version stays stored, rolled back.  HIGH and CRITICAL
    plans wait for `optimize approve`.
    """


@optimize_group.command("approve")
@click.argument("plan_id", type=int)
@click.option("--outcomes", type=click.Path(path_type=Path, dir_okay=False),
              help="Recorded outcomes to replay [default: the newest HOME/bench/routing-outcomes-*.json "
                   "that `kisystem bench routing` wrote].")
@JSON_OPTION
@pass_app
def approve(app: AppContext, plan_id: int, outcomes: Path | None, as_json: bool) -> None:
    """Apply plan PLAN_ID (awaiting approval): kept if better on replay, else rolled back."""
    from kisystem.improve.validate import ReplayValidator  # the replay pulls in the loop: only here

    with optimization_store(app, create=False) as store:
        if store is None:
            raise UnknownPlan(f"no optimization plan {plan_id}")
        store.plan(plan_id)  # an unknown id is reported before any outcomes are looked for
        validator = ReplayValidator(_outcome_table(app, outcomes))
        outcome = approve_plan(store, plan_id, app.config, app.inventory, validator, warn=_warner(app))
    _print_outcome(outcome.plan, outcome.result, as_json)


@optimize_group.command("reject")
@click.argument("plan_id", type=int)
@JSON_OPTION
@pass_app
def reject(app: AppContext, plan_id: int, as_json: bool) -> None:
    """Close plan PLAN_ID (awaiting approval) without applying it."""
    with optimization_store(app, create=False) as store:
        if store is None:
            raise UnknownPlan(f"no optimization plan {plan_id}")
        plan = reject_plan(store, plan_id)
    _print_outcome(plan, None, as_json)


@optimize_group.command("history")
@click.argument("agent", required=False)
@JSON_OPTION
@pass_app
def history(app: AppContext, agent: str | None, as_json: bool) -> None:
    """Plans (of AGENT, a model) and what came of them, oldest first."""
    with optimization_store(app, create=False) as store:
        rows = [(p, store.results(p.id)) for p in store.plans(agent)] if store else []
    if agent is not None and not rows and agent not in app.inventory.models:
        raise UsageError(f"unknown agent {agent!r} (models: {', '.join(app.inventory.models)})")
    if as_json:
        click.echo(json.dumps([{**plan_json(p), "results": [result_json(r) for r in rs]} for p, rs in rows], indent=2))
        return
    if not rows:
        click.echo("no optimization plans yet")
    for plan, results in rows:
        click.echo(_plan_line(plan))
        for result in results:
            click.echo(f"    {_result_line(result)}")


# -- shared with `config versions | rollback` ---------------------------------------------


@contextmanager
def optimization_store(app: AppContext, create: bool = True) -> Iterator[OptimizationStore | None]:
    """The store over --db; None when the database does not exist and ``create`` is off (it stays absent)."""
    if not create and not app.paths.db.exists():
        yield None
        return
    with OptimizationStore.open(app.paths.db) as store:
        yield store


def plan_json(plan: Plan) -> dict[str, Any]:
    opp = plan.opportunity
    return {"id": plan.id, "status": plan.status, "severity": str(plan.severity), "opportunity": opp.type,
            "agent": opp.agent, "domain": opp.domain, "evidence": dict(opp.evidence), "strategy": str(plan.strategy),
            "changes": [change_to_json(c) for c in plan.changes], "summary": plan.describe(),
            "effect": plan.effect, "metric": plan.metric, "created": _ts(plan.created), "updated": _ts(plan.updated)}


def result_json(result: PlanResult) -> dict[str, Any]:
    return {"plan": result.plan, "version": result.version, "kept": result.kept, "metric": result.metric,
            "before": dict(result.before), "after": dict(result.after), "detail": result.detail, "ts": _ts(result.ts)}


def version_json(version: ConfigVersion) -> dict[str, Any]:
    return {"version": version.id, "parent": version.parent, "created": _ts(version.created),
            "state": version.state, "active": version.active, "plan": version.plan, "reason": version.reason,
            "overlay": version.overlay.to_json()}


def _ts(value: Any) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _warner(app: AppContext):
    return lambda message: app.err_console.print(f"[yellow]warning: {message}[/yellow]")


def _outcome_table(app: AppContext, given: Path | None):
    from kisystem.bench.routing import load_table

    path = given or _newest_outcomes(app.paths.home / "bench")
    if path is None:
        raise UsageError("no recorded outcomes to validate on: run `kisystem bench routing` first, "
                         "or give --outcomes FILE")
    try:
        return load_table(path)
    except OSError as err:
        raise UsageError(f"{path}: cannot read recorded outcomes ({err.strerror or err})") from err
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{path}: not a recorded outcome table ({type(err).__name__}: {err})") from err


def _newest_outcomes(folder: Path) -> Path | None:
    found = [p for p in folder.glob(OUTCOMES_GLOB) if not p.name.endswith(".partial.json")]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _print_outcome(plan: Plan, result: PlanResult | None, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"plan": plan_json(plan), "result": result_json(result) if result else None}, indent=2))
        return
    click.echo(_plan_line(plan))
    if result is not None:
        click.echo(f"    {_result_line(result)}")


def _plan_line(plan: Plan) -> str:
    opp = plan.opportunity
    about = " ".join(x for x in (opp.agent, opp.domain) if x)
    return (f"plan {plan.id} [{plan.status}] {plan.severity} {opp.type}"
            f"{f' ({about})' if about else ''}: {plan.describe()}")


def _result_line(result: PlanResult) -> str:
    version = f"version {result.version}" if result.version is not None else "no version"
    return f"{version}: {result.detail}"
