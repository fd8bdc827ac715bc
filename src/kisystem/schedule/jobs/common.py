"""What the built-in jobs share: the effective configuration, plans without repeats, and the
learning database's history as a routing outcome table.

The history table (:func:`history_table`) turns every finished run's iterations into the
samples a routing replay (:mod:`kisystem.improve.validate`) takes: per task and model the
recorded answers in order, each with its generation, build and test seconds and how it
ended.  A run's iterations are its loop's own tries (repairs included), so the replay of a
configuration is an approximation, as the routing benchmark's is.  A model without any
recorded answer to a task is passed over at no cost there, as the loop passes over a
model its backend lacks.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kisystem.bench.routing import OutcomeTable, Sample, load_table
from kisystem.domains import DEFAULT_DOMAINS
from kisystem.errors import UsageError
from kisystem.improve.overlay import Configured
from kisystem.improve.plans import Opportunity, Plan, change_to_json
from kisystem.improve.versions import OptimizationStore, apply_active
from kisystem.loop.taskspec import TaskSpec, load_task_text
from kisystem.models.inventory import Inventory
from kisystem.schedule.tasks import JobContext
from kisystem.store.learning import LearningStore
from kisystem.store.times import iso

OUTCOMES_GLOB = "routing-outcomes-*.json"  # what `kisystem bench routing` records (kisystem optimize reads it too)
EVIDENCE_OUTCOMES = ("success", "failed", "exhausted")
OPEN_PLAN_STATUSES = ("proposed", "awaiting_approval")
NO_CODE_SEVERITY = 2  # as the loop's NO_CODE failure
BACKEND_SEVERITY = 3  # as Attempt.generation_failed


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(float(value), digits)


def share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


# -- configuration and plans --------------------------------------------------------------


@contextmanager
def optimization_store(ctx: JobContext) -> Iterator[OptimizationStore]:
    """The configuration versions and plans of the job's learning database, on the job's clock."""
    with OptimizationStore.open(ctx.db, clock=ctx.clock) as store:
        yield store


def effective(ctx: JobContext, store: OptimizationStore) -> Configured:
    """The configuration the loop runs by now: the shipped one with the active version applied."""
    return apply_active(ctx.config, ctx.inventory, store, ctx.log)


def change_key(plan: Plan) -> str:
    """What two plans that ask for the same thing have in common: their changes."""
    return json.dumps([change_to_json(c) for c in plan.changes], sort_keys=True, default=str)


def opportunity_key(opp: Opportunity) -> tuple[str, str | None, str | None]:
    """What makes two opportunities the same one: its type, agent and domain (not the evidence of the day)."""
    return opp.type, opp.agent, opp.domain


def recent_plans(store: OptimizationStore, now: datetime, cooldown: timedelta) -> list[Plan]:
    """The plans still open (proposed, awaiting approval) or decided within ``cooldown``."""
    since = now - cooldown
    return [p for p in store.plans()
            if p.status in OPEN_PLAN_STATUSES or (p.updated is not None and p.updated >= since)]


def planned_lately(store: OptimizationStore, now: datetime, cooldown: timedelta) -> set[str]:
    """The change sets of :func:`recent_plans`."""
    return {change_key(p) for p in recent_plans(store, now, cooldown)}


def plan_json(plan: Plan) -> dict[str, Any]:
    """A stored plan in a job's result: enough to find it (``kisystem optimize history``) and see what it does."""
    opp = plan.opportunity
    return {"id": plan.id, "status": plan.status, "severity": str(plan.severity), "opportunity": opp.type,
            "agent": opp.agent, "domain": opp.domain, "changes": [change_to_json(c) for c in plan.changes],
            "summary": plan.describe(), "effect": plan.effect}


# -- the history as a routing outcome table ---------------------------------------------------

_HISTORY = """
SELECT r.run_id, r.task, r.domain, r.outcome, e.kind, e.payload
FROM runs r JOIN run_events e ON e.run_id = r.run_id
WHERE r.outcome IN ('success', 'failed', 'exhausted') AND r.ts >= ?
    AND e.kind IN ('answer', 'build', 'test', 'score')
ORDER BY r.ts, r.run_id, e.id
"""


@dataclass
class _Iteration:
    """The parts of one iteration's events, until its ``score`` event closes it."""

    model: str | None = None
    gen_s: float = 0.0
    tokens: int = 0
    build_s: float = 0.0
    test_s: float = 0.0
    error: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class History:
    """The recorded runs as a routing outcome table, and how many finished runs it holds."""

    table: OutcomeTable
    runs: int
    samples: int


def history_table(store: LearningStore, inventory: Inventory, since: datetime) -> History:
    """Every finished run (success, failed, exhausted) started since ``since`` with its iterations as samples."""
    runs: dict[str, tuple[str, str, str, list[Sample], list[str]]] = {}
    current: dict[str, _Iteration] = {}
    for run_id, task, domain, outcome, kind, payload in store.query(_HISTORY, (iso(since),)):
        entry = runs.setdefault(run_id, (task, domain, outcome, [], []))
        data = json.loads(payload)
        it = current.setdefault(run_id, _Iteration())
        if kind == "score":
            entry[3].append(_sample(it, data))
            entry[4].append(str(data.get("model") or it.model or ""))
            current[run_id] = _Iteration()
        else:
            _add_part(it, kind, data)
    samples: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    domains: dict[str, str] = {}
    for task, domain, outcome, done, models in runs.values():
        if done and outcome == "success":
            done[-1] = _solved(done[-1])
        for sample, model in zip(done, models):
            if model:
                samples[task][model].append(sample)
        if done:
            domains[task] = domain
    table = _table(domains, samples, inventory)
    return History(table, len(runs), sum(len(ss) for per in samples.values() for ss in per.values()))


def _add_part(it: _Iteration, kind: str, data: Mapping[str, Any]) -> None:
    it.model = data.get("model") or it.model
    seconds = float(data.get("seconds") or 0.0)
    if kind == "answer":
        it.gen_s += seconds
        it.tokens += int(data.get("prompt_tokens") or 0) + int(data.get("completion_tokens") or 0)
    elif kind == "build":
        it.build_s += seconds
    elif kind == "test":
        it.test_s += seconds
    if kind in ("build", "test") and isinstance(data.get("error"), Mapping):
        it.error = data["error"]


def _sample(it: _Iteration, score: Mapping[str, Any]) -> Sample:
    """An iteration as a failed sample (the run's last iteration of a success is marked solved after)."""
    value = score.get("score")
    if value is None:  # the backend gave no answer
        return Sample(False, 0.0, it.gen_s, severity=BACKEND_SEVERITY, recoverable=True, error_type="RUNTIME")
    err = it.error
    error_type = err.get("error_type") or score.get("error")
    if error_type is not None and error_type not in ("COMPILATION", "RUNTIME", "PERFORMANCE", "LOGIC"):
        error_type = "COMPILATION"  # "no code in the answer", "unsafe file name": the loop's NO_CODE
    return Sample(False, float(value), round(it.gen_s, 3), round(it.build_s, 3), round(it.test_s, 3), it.tokens,
                  int(err.get("severity", NO_CODE_SEVERITY if error_type else 0)),
                  bool(err.get("recoverable", True)), error_type)


def _solved(sample: Sample) -> Sample:
    return Sample(True, sample.score, sample.gen_s, sample.build_s, sample.test_s, sample.tokens)


def _table(domains: Mapping[str, str], samples: Mapping[str, Mapping[str, list[Sample]]],
           inventory: Inventory) -> OutcomeTable:
    """Chains: the route's models first (in its order), then every other recorded model by rank;
    a task lacks no model of its domain's chain (an empty tuple where it has no answer of it)."""
    recorded: dict[str, set[str]] = defaultdict(set)
    for task, per in samples.items():
        recorded[domains[task]] |= set(per)
    chains = {d: _chain(d, models, inventory) for d, models in recorded.items()}
    rows = {t: {m: tuple(samples[t].get(m, ())) for m in chains[d]} for t, d in domains.items()}
    return OutcomeTable(dict(domains), chains, rows, {"source": "learning database"})


def _chain(domain: str, models: set[str], inventory: Inventory) -> tuple[str, ...]:
    route = inventory.routes[domain].chain if domain in inventory.routes else ()

    def rank(m: str) -> tuple[int, str]:
        return (inventory.models[m].rank if m in inventory.models else 10**6, m)

    return (*(m for m in route if m in models), *sorted(models - set(route), key=rank))


def bench_table(home: Path) -> tuple[OutcomeTable, Path] | None:
    """The newest outcome table `kisystem bench routing` recorded under ``home``, if any (partial ones left out)."""
    found = [p for p in (home / "bench").glob(OUTCOMES_GLOB) if not p.name.endswith(".partial.json")]
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        try:
            return load_table(path), path
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return None


# -- task specs of recorded runs --------------------------------------------------------------

_QUEUED_SPECS = "SELECT task, spec FROM queue_tasks ORDER BY id"


def queued_specs(store: LearningStore, inventory: Inventory, tasks: Iterable[str]) -> dict[str, TaskSpec]:
    """The specs the queue stored for ``tasks`` (by task id; the newest wins); tasks run otherwise have none."""
    wanted, specs = set(tasks), {}
    known = tuple(dict.fromkeys((*inventory.routes, *DEFAULT_DOMAINS)))
    for task, text in store.query(_QUEUED_SPECS):
        if task in wanted:
            try:
                specs[task] = load_task_text(text, f"queued task {task}", known)
            except UsageError:  # a spec that no longer parses is no evidence; the task is replayed without it
                continue
    return specs
