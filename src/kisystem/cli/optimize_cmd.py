"""`kisystem optimize ...`: health, opportunities and plans of the routing and tuning configuration.

``status`` and ``stats`` read what is stored; ``analyze AGENT`` computes (and stores) a
model's health and lists its opportunities; ``opportunities`` lists them for every model
(asking non-embedded backends which models they offer, unless ``--offline``); ``plan``
shows the plans a strategy makes of them without applying anything; ``auto`` applies them
copy-on-write, validated on the newest recorded routing outcomes.  ``approve`` validates a
plan that awaits approval the same way and keeps it only if it is better; ``reject``
closes it; ``history`` lists plans and what came of them.  The helpers at the bottom are
shared with ``kisystem config versions | rollback``.
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
from kisystem.improve.plans import Opportunity, Plan, Strategy, change_to_json
from kisystem.improve.versions import (
    ConfigVersion,
    OptimizationStore,
    PlanResult,
    UnknownPlan,
    apply_active,
)

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
DAYS_OPTION = click.option("--days", type=click.IntRange(min=1), default=None,
                           help="Window in days [default: health.lookback_days, 7].")
STRATEGY_OPTION = click.option("--strategy", "strategy_name", default="auto", show_default=True,
                               help="auto | conservative | aggressive | minimal | comprehensive.")
OFFLINE_OPTION = click.option("--offline", is_flag=True,
                              help="Do not ask the backends which models they offer (no tool_upgrade).")
OUTCOMES_GLOB = "routing-outcomes-*.json"


@click.group("optimize")
def optimize_group() -> None:
    """Plans that change kisystem's routing and tuning configuration (copy-on-write, validated, rolled back).

    A plan is applied to a new configuration version, validated by replaying recorded
    outcomes, and kept (made active) only if it solves more tasks, or as many in fewer
    model-seconds; otherwise the version stays stored, rolled back.  HIGH and CRITICAL
    plans wait for `optimize approve`.
    """


@optimize_group.command("status")
@JSON_OPTION
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """The active configuration version, plans waiting for approval and every model's latest health."""
    data = _status(app)
    if as_json:
        return _echo_json(data)
    click.echo(f"active configuration: version {data['active_version']}"
               f"{' (shipped)' if data['active_version'] == 0 else ''}")
    click.echo("plans: " + (", ".join(f"{n} {s}" for s, n in data["plans"].items()) or "none yet"))
    if data["awaiting_approval"]:
        click.echo("awaiting approval: " + ", ".join(f"plan {i}" for i in data["awaiting_approval"])
                   + " (kisystem optimize approve ID | reject ID)")
    for agent in data["agents"]:
        h = data["health"].get(agent)
        click.echo(f"  {agent}: " + (f"health {h['score']:.1f} ({h['trend']}, {h['ts']})" if h
                                     else "no health computed yet (kisystem optimize analyze AGENT)"))


@optimize_group.command("analyze")
@click.argument("agent")
@DAYS_OPTION
@OFFLINE_OPTION
@JSON_OPTION
@pass_app
def analyze(app: AppContext, agent: str, days: int | None, offline: bool, as_json: bool) -> None:
    """Health (stored in the history, with its trend) and opportunities of AGENT, a model."""
    with health_monitor(app) as monitor:
        monitor.require_agent(agent)
        health = monitor.compute(agent, days)
        found = _opportunities(app, monitor, days, agent, offline)
    if as_json:
        return _echo_json({"health": health.to_dict(), "opportunities": [opportunity_json(o) for o in found]})
    _print_health(health)
    _print_opportunities(found, f"no opportunities for {agent}")


@optimize_group.command("opportunities")
@click.argument("agent", required=False)
@DAYS_OPTION
@OFFLINE_OPTION
@JSON_OPTION
@pass_app
def opportunities(app: AppContext, agent: str | None, days: int | None, offline: bool, as_json: bool) -> None:
    """Improvement opportunities (of AGENT, a model), most severe first."""
    with health_monitor(app) as monitor:
        if agent is not None:
            monitor.require_agent(agent)
        found = _opportunities(app, monitor, days, agent, offline)
    if as_json:
        return _echo_json([opportunity_json(o) for o in found])
    _print_opportunities(found, "no opportunities found" + (f" for {agent}" if agent else ""))


@optimize_group.command("plan")
@click.argument("agent")
@STRATEGY_OPTION
@DAYS_OPTION
@JSON_OPTION
@pass_app
def plan(app: AppContext, agent: str, strategy_name: str, days: int | None, as_json: bool) -> None:
    """The plans STRATEGY makes of AGENT's opportunities (nothing is stored or applied)."""
    from kisystem.improve.plans import plans_for

    strategy = Strategy.parse(strategy_name)
    with health_monitor(app) as monitor:
        monitor.require_agent(agent)
        found = _opportunities(app, monitor, days, agent, offline=True)
    with optimization_store(app) as store:
        plans = plans_for(found, strategy, *apply_active(app.config, app.inventory, store, _warner(app)))
    if as_json:
        return _echo_json([plan_json(p) for p in plans])
    if not plans:
        click.echo(f"no plans: {len(found)} opportunities for {agent}, none with a remedy under {strategy.lower()}")
    for p in plans:
        click.echo(f"{p.severity} {p.opportunity.type}: {p.describe()} ({p.effect}; metric {p.metric}"
                   f"{'; waits for approval' if p.severity.needs_approval else ''})")


@optimize_group.command("auto")
@click.argument("agent")
@STRATEGY_OPTION
@DAYS_OPTION
@click.option("--outcomes", type=click.Path(path_type=Path, dir_okay=False),
              help="Recorded outcomes to replay [default: the newest HOME/bench/routing-outcomes-*.json].")
@JSON_OPTION
@pass_app
def auto(app: AppContext, agent: str, strategy_name: str, days: int | None, outcomes: Path | None,
         as_json: bool) -> None:
    """Apply the plans of AGENT's opportunities copy-on-write: kept if better on replay, else rolled back;
    HIGH and CRITICAL plans are stored to wait for approval."""
    from kisystem.improve.auto import auto_optimize
    from kisystem.improve.validate import ReplayValidator

    strategy = Strategy.parse(strategy_name)
    with health_monitor(app) as monitor:
        monitor.require_agent(agent)
        validator = ReplayValidator(_outcome_table(app, outcomes))
        found = _opportunities(app, monitor, days, agent, offline=True)
    with optimization_store(app) as store:
        done = auto_optimize(store, app.config, app.inventory, found, strategy, validator, warn=_warner(app))
    if as_json:
        return _echo_json({"opportunities": [opportunity_json(o) for o in found],
                           "plans": [{"plan": plan_json(o.plan), "result": result_json(o.result) if o.result else None}
                                     for o in done]})
    if not done:
        click.echo(f"nothing to apply: {len(found)} opportunities for {agent}, none with a remedy under "
                   f"{strategy.lower()}")
    for outcome in done:
        _print_outcome(outcome.plan, outcome.result, False)


@optimize_group.command("stats")
@JSON_OPTION
@pass_app
def stats(app: AppContext, as_json: bool) -> None:
    """Counts over the history: plans by type, severity and status, results, versions, health per model."""
    data = _stats(app)
    if as_json:
        return _echo_json(data)
    for name in ("plans_by_status", "plans_by_opportunity", "plans_by_severity", "results"):
        click.echo(f"{name.replace('_', ' ')}: " + (", ".join(f"{k} {v}" for k, v in data[name].items()) or "none"))
    click.echo(f"configuration versions: {data['versions']}")
    for agent, h in data["health"].items():
        click.echo(f"  {agent}: {h['computed']} health scores, mean {h['mean']:.1f}, "
                   f"min {h['min']:.1f}, max {h['max']:.1f}, latest {h['latest']:.1f}")


@optimize_group.command("approve")
@click.argument("plan_id", type=int)
@click.option("--outcomes", type=click.Path(path_type=Path, dir_okay=False),
              help="Recorded outcomes to replay [default: the newest HOME/bench/routing-outcomes-*.json "
                   "that `kisystem bench routing` wrote].")
@JSON_OPTION
@pass_app
def approve(app: AppContext, plan_id: int, outcomes: Path | None, as_json: bool) -> None:
    """Apply plan PLAN_ID (awaiting approval): kept if better on replay, else rolled back (a max_tokens
    or num_ctx plan, which no replay can judge: kept)."""
    from kisystem.improve.validate import (
        ReplayValidator,  # the replay pulls in the loop: only here
    )

    with optimization_store(app, create=False) as store:
        if store is None:
            raise UnknownPlan(f"no optimization plan {plan_id}")
        plan = store.plan(plan_id)  # an unknown id is reported before any outcomes are looked for
        # A plan no replay can judge (max_tokens, num_ctx) needs no recorded outcomes: the approval decides.
        validator = ReplayValidator(_outcome_table(app, outcomes)) if plan.replayable else None
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


# -- health and opportunities --------------------------------------------------------------


@contextmanager
def health_monitor(app: AppContext):
    """A HealthMonitor over --db (created if absent) under the active configuration version."""
    from kisystem.improve.health import HealthMonitor
    from kisystem.store.learning import LearningStore

    with optimization_store(app) as store:
        config, inventory = apply_active(app.config, app.inventory, store, _warner(app))
    with LearningStore.open(app.paths.db) as learning:
        yield HealthMonitor(learning, config, inventory)


def _opportunities(app: AppContext, monitor: Any, days: int | None, agent: str | None,
                   offline: bool) -> list[Opportunity]:
    from kisystem.improve.opportunities import find, gather

    offered = {} if offline else offered_models(monitor.inventory, _warner(app))
    return find(gather(monitor, days, offered=offered), monitor.config, monitor.inventory, agent)


def offered_models(inventory: Any, warn: Any) -> dict[str, list[str]]:
    """The model names each non-embedded endpoint offers (Ollama /api/tags, /v1/models); one that does
    not answer is skipped with a warning.  Embedded servers serve exactly their one model."""
    import asyncio

    from kisystem.errors import KisystemError
    from kisystem.models.client import ModelClient

    async def ask() -> dict[str, list[str]]:
        client = ModelClient(inventory, gate=None)
        found: dict[str, list[str]] = {}
        try:
            for endpoint in inventory.endpoints.values():
                models = [m for m in inventory.models.values() if m.endpoint == endpoint.name]
                if not models or any(m.embedded for m in models):
                    continue
                try:
                    found[endpoint.name] = await client.adapter_for(models[0].name).list_models()
                except KisystemError as err:
                    warn(f"{endpoint.name} not asked for its models (no tool_upgrade check): {err}")
        finally:
            await client.aclose()
        return found

    return asyncio.run(ask())


def opportunity_json(o: Opportunity) -> dict[str, Any]:
    from kisystem.improve.opportunities import describe

    return {"type": o.type, "severity": str(o.severity), "agent": o.agent, "domain": o.domain,
            "summary": describe(o), "evidence": dict(o.evidence)}


def _print_health(health: Any) -> None:
    from kisystem.improve.health import NoHealth

    if isinstance(health, NoHealth):
        click.echo(f"{health.agent}: no health score: {health.reason}")
        return
    d = health.details
    unmeasured = d.get("unmeasured") or []
    click.echo(f"{health.agent}: health {health.score:.1f} / 100 over {health.days} days, {health.trend}"
               + (f" (earlier mean {health.previous:.1f})" if health.previous is not None else " (first score)"))
    click.echo(f"  success rate        {health.success_rate:.2f}  ({d['successes']} of {health.runs} runs)")
    timing = (f"mean generation {d['mean_generation_s']:g} s, SLA {d['sla_s']:g} s, timeout {d['timeout_s']:g} s"
              if "response_time_score" not in unmeasured else "unmeasured: no timed generations")
    click.echo(f"  response time score {health.response_time_score:.2f}  ({timing})")
    quality = (f"{d['quality_scores']} quality scores" if "code_quality" not in unmeasured
               else "unmeasured: no quality_score feedback, the neutral default")
    click.echo(f"  code quality        {health.code_quality:.2f}  ({quality})")
    errors = (f"{d['errors']} of {d['iterations']} iterations" if "error_rate" not in unmeasured
              else "unmeasured: no iteration events")
    click.echo(f"  error rate          {health.error_rate:.2f}  ({errors})")


def _print_opportunities(found: list[Opportunity], none: str) -> None:
    from kisystem.improve.opportunities import describe

    if not found:
        click.echo(none)
    for o in found:
        click.echo(f"{o.severity:<8} {o.type}: {describe(o)}")


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _status(app: AppContext) -> dict[str, Any]:
    from collections import Counter

    from kisystem.improve.health import HealthMonitor
    from kisystem.store.learning import LearningStore

    data: dict[str, Any] = {"active_version": 0, "plans": {}, "awaiting_approval": [], "agents": [],
                            "health": {}}
    if not app.paths.db.exists():
        data["agents"] = list(app.inventory.models)
        return data
    with optimization_store(app) as store:
        active = store.active()
        plans = store.plans()
    with LearningStore.open(app.paths.db) as learning:
        monitor = HealthMonitor(learning, app.config, app.inventory)
        data["agents"] = monitor.agents()
        data["health"] = {a: {"score": round(h.score, 2), "trend": h.trend, "days": h.days,
                              "ts": h.ts.isoformat(timespec="seconds") if h.ts else None}
                          for a, h in monitor.latest().items()}
    data["active_version"] = active.id if active else 0
    data["plans"] = dict(sorted(Counter(p.status for p in plans).items()))
    data["awaiting_approval"] = [p.id for p in plans if p.status == "awaiting_approval"]
    return data


def _stats(app: AppContext) -> dict[str, Any]:
    from collections import Counter

    from kisystem.improve.health import HealthMonitor
    from kisystem.store.learning import LearningStore

    data: dict[str, Any] = {"plans_by_status": {}, "plans_by_opportunity": {}, "plans_by_severity": {},
                            "results": {}, "versions": 0, "health": {}}
    if not app.paths.db.exists():
        return data
    with optimization_store(app) as store:
        plans, results, versions = store.plans(), store.results(), store.versions()
    with LearningStore.open(app.paths.db) as learning:
        history = HealthMonitor(learning, app.config, app.inventory).history()
    count = lambda values: dict(sorted(Counter(values).items()))
    data.update(plans_by_status=count(p.status for p in plans), plans_by_opportunity=count(p.opportunity.type
                for p in plans), plans_by_severity=count(str(p.severity) for p in plans),
                results=count("kept" if r.kept else "rolled_back" for r in results), versions=len(versions))
    by_agent: dict[str, list[float]] = {}
    for h in reversed(history):  # oldest first
        by_agent.setdefault(h.agent, []).append(h.score)
    data["health"] = {a: {"computed": len(s), "mean": round(sum(s) / len(s), 2), "min": round(min(s), 2),
                          "max": round(max(s), 2), "latest": round(s[-1], 2)} for a, s in sorted(by_agent.items())}
    return data


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
