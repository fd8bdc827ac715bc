"""Model health profiling (bi-weekly): a smoke set through every reachable model, then health and
opportunities.

1. Reachability: each endpoint is asked which models it has; a model whose endpoint does not
   answer, or does not offer it, is reported with the reason and left out (never fatal).
   Embedded models are served only while something serves them; with
   ``jobs.health_start_embedded`` the job starts their servers itself for the smoke set.
2. The smoke set (:mod:`kisystem.schedule.jobs.smoke`, ``jobs.smoke_problems`` of 3) through
   each reachable model, one greedy answer per problem, judged in the sandbox as the loop
   judges HumanEval: solved (score >= ``target_score``), first-token latency and tokens/s
   (completion tokens over the streaming time after the first token) per answer, medians per model.
3. Server memory of the embedded models: the serving process (its pid from
   :mod:`kisystem.models.server_records`) VmRSS and peak from /proc, and what it holds beyond
   the weights and KV cache (:func:`kisystem.improve.resources.server_memory`); that excess
   feeds the ``resource_inefficiency`` trigger.
4. Health: :class:`~kisystem.improve.health.HealthMonitor` computes and stores every model's
   health (with its trend) from the learning database.
5. Opportunities: :func:`~kisystem.improve.opportunities.gather` and ``find`` over the same
   window, with the offered models (``tool_upgrade``) and the server memory; returned, not
   planned: the improvement job (every 5 minutes) turns them into plans.
"""

from __future__ import annotations

import contextlib
import statistics
import struct
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from kisystem.config import OptimizationConfig
from kisystem.errors import BackendError, KisystemError
from kisystem.improve import resources
from kisystem.improve.feedback import FeedbackLoop
from kisystem.improve.health import HealthMonitor
from kisystem.improve.opportunities import describe, find, gather
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.taskspec import TaskSpec
from kisystem.models import server_records
from kisystem.models.client import ModelClient
from kisystem.models.gate import GenerationGate
from kisystem.models.inventory import Inventory, ModelSpec
from kisystem.models.server import EmbeddedFleet, port_of, served_n_ctx
from kisystem.schedule.jobs.common import effective, optimization_store, rounded
from kisystem.schedule.jobs.smoke import smoke_tasks
from kisystem.schedule.tasks import JobContext, JobResult

Reach = dict[str, str | None]  # model -> None when reachable, else why not


# -- reachability -----------------------------------------------------------------------------


async def reachability(client: ModelClient, inventory: Inventory) -> tuple[Reach, dict[str, list[str]]]:
    """Per model: None if its endpoint offers it, else why not; and what each non-embedded endpoint offers."""
    reach: Reach = {}
    offered: dict[str, list[str]] = {}
    for endpoint in inventory.endpoints.values():
        names = [m.name for m in inventory.models.values() if m.endpoint == endpoint.name]
        if not names:
            continue
        try:
            listed = await client.adapter_for(names[0]).list_models()
        except KisystemError as err:
            reach.update(dict.fromkeys(names, f"{endpoint.name} ({endpoint.base_url}) does not answer: {err}"))
            continue
        if not any(inventory.models[n].embedded for n in names):
            offered[endpoint.name] = list(listed)
        bases = {_base(m) for m in listed}
        for name in names:
            reach[name] = None if name in listed or _base(name) in bases else \
                f"{endpoint.name} ({endpoint.base_url}) does not offer it"
    return reach, offered


def _base(name: str) -> str:
    """Ollama lists 'phi4:latest' where an inventory may say 'phi4'."""
    return name if ":" in name else f"{name}:latest"


@contextlib.contextmanager
def served(ctx: JobContext, inventory: Inventory, reach: Reach) -> Iterator[list[str]]:
    """With ``jobs.health_start_embedded``, the unreachable embedded models served for the block; their names.
    A fleet that cannot start is logged, and its models stay unreachable."""
    missing = [n for n, why in reach.items() if why and inventory.models[n].embedded]
    if not (ctx.config.jobs.health_start_embedded and missing):
        yield []
        return
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(EmbeddedFleet(inventory, ctx.paths.home, missing, config_file=ctx.paths.config))
        except KisystemError as err:
            ctx.log(f"health_profiling: the embedded servers of {', '.join(missing)} did not start: {err}")
            missing = []
        yield missing


# -- the smoke set ------------------------------------------------------------------------------


def _quiet(*args: Any, **kwargs: Any) -> None:
    """The attempt's events: the smoke set records none (it is no task run of the learning database)."""


async def smoke_answer(ctx: JobContext, client: ModelClient, attempts: AttemptRunner, spec: ModelSpec,
                       task: TaskSpec, target: float) -> dict[str, Any]:
    """One greedy answer of ``spec`` to ``task``, judged; its figures."""
    run_id = f"smoke-{uuid.uuid4().hex[:12]}"
    record: dict[str, Any] = {"problem": task.id}
    async with attempts.task_run(task, run_id):
        request = attempts.request_for(task, spec.name, spec.mode, None, 0, spec.max_tokens)
        try:
            generation = await client.generate(request)
        except BackendError as err:
            record.update(solved=False, error=f"{type(err).__name__}: {err}")
        else:
            attempt = await attempts.run(task, run_id, 1, spec.name, spec.mode, request, generation, _quiet)
            streaming = generation.total_s - (generation.first_token_s or 0.0)
            record.update(
                solved=attempt.failure is None and attempt.score >= target, score=rounded(attempt.score, 1),
                error=attempt.failure.error_type if attempt.failure else None,
                first_token_s=rounded(generation.first_token_s), seconds=rounded(generation.total_s),
                completion_tokens=generation.completion_tokens, finish_reason=generation.finish_reason,
                tokens_per_s=rounded(generation.completion_tokens / streaming, 2) if streaming > 0 else None)
    attempts.retire(run_id, solved=bool(record.get("solved")))
    return record


async def smoke_model(ctx: JobContext, client: ModelClient, attempts: AttemptRunner, spec: ModelSpec,
                      tasks: Sequence[TaskSpec], target: float) -> dict[str, Any]:
    answers = []
    for task in tasks:
        if ctx.time_left() <= 0:
            answers.append({"problem": task.id, "solved": False, "error": "not asked: the job's time is up"})
            continue
        answers.append(await smoke_answer(ctx, client, attempts, spec, task, target))
    firsts = [a["first_token_s"] for a in answers if a.get("first_token_s") is not None]
    rates = [a["tokens_per_s"] for a in answers if a.get("tokens_per_s") is not None]
    solved = sum(bool(a.get("solved")) for a in answers)
    return {"reachable": True, "solved": solved, "problems": len(answers),
            "success_rate": round(solved / len(answers), 4),
            "first_token_s": rounded(statistics.median(firsts)) if firsts else None,
            "tokens_per_s": rounded(statistics.median(rates), 2) if rates else None, "answers": answers}


async def smoke_set(ctx: JobContext, config: OptimizationConfig, inventory: Inventory, client: ModelClient,
                    models: Sequence[str]) -> dict[str, dict[str, Any]]:
    tasks = smoke_tasks(config.jobs.smoke_problems)
    phases = PhaseRunner(config)
    with tempfile.TemporaryDirectory(prefix="kisystem-smoke-") as tmp:
        attempts = AttemptRunner(phases, Path(tmp))
        return {m: await smoke_model(ctx, client, attempts, inventory.model(m), tasks, config.target_score)
                for m in models}


# -- server memory ------------------------------------------------------------------------------


def server_memory(ctx: JobContext, inventory: Inventory) -> tuple[dict[str, Any], list[resources.ResourceSample]]:
    """Per embedded model: its server's pid, VmRSS and peak (MB), and what it holds beyond weights and KV cache."""
    by_pid: dict[int, dict[str, tuple[str, int]]] = defaultdict(dict)  # pid -> name -> (catalog name, n_ctx)
    report: dict[str, Any] = {}
    for spec in inventory.models.values():
        if not spec.embedded:
            continue
        state, pid = server_records.state_of(ctx.paths.home, port_of(inventory.endpoint_of(spec.name).base_url))
        if pid is None:
            report[spec.name] = {"pid": None, "note": f"no server kisystem started serves it ({state})"}
        else:
            by_pid[pid][spec.name] = (spec.embedded, served_n_ctx(spec) * ctx.config.ensemble.llama_slots)
    samples = []
    for pid, models in by_pid.items():
        entry, sample = _measure(pid, models, ctx.paths.models_dir)
        report.update(dict.fromkeys(models, entry))
        samples += [sample] if sample else []
    return report, samples


def _measure(pid: int, models: Mapping[str, tuple[str, int]], models_dir: Path) -> tuple[dict[str, Any], Any]:
    measured = resources.process_memory_mb(pid)
    if measured is None:
        return {"pid": pid, "note": "the process is gone"}, None
    entry = {"pid": pid, "models": sorted(models), "peak_mb": round(measured[0], 1), "rss_mb": round(measured[1], 1)}
    try:
        memory = resources.server_memory(pid, dict(models), models_dir)
    except (OSError, ValueError, KeyError, struct.error) as err:
        return {**entry, "beyond_mb": None, "note": f"weights and KV cache not sized: {err}"}, None
    if memory is None:
        return entry, None
    payload = memory.payload()
    agent = next(iter(models)) if len(models) == 1 else "server"
    sample = resources.ResourceSample(agent, f"server of {', '.join(sorted(models))}: beyond weights and KV cache",
                                      "server", memory_mb=payload["beyond_mb"])
    return {**entry, **payload}, sample


# -- health and opportunities -------------------------------------------------------------------


def health_and_opportunities(ctx: JobContext, config: OptimizationConfig, inventory: Inventory,
                             offered: Mapping[str, Sequence[str]], samples: Sequence[resources.ResourceSample],
                             ) -> tuple[dict[str, Any], list[dict[str, Any]]]:  # fmt: skip
    feedback = FeedbackLoop(ctx.store, config.feedback, clock=ctx.clock)
    monitor = HealthMonitor(ctx.store, config, inventory, feedback, clock=ctx.clock)
    health = {}
    for agent in monitor.agents():
        computed = monitor.compute(agent).to_dict()
        health[agent] = {k: computed.get(k) for k in ("score", "trend", "runs", "success_rate", "response_time_score",
                                                       "code_quality", "error_rate", "reason") if k in computed}
    inputs = gather(monitor, offered=offered)
    inputs = replace(inputs, resources=[*inputs.resources, *samples])
    found = find(inputs, config, inventory)
    return health, [{"type": o.type, "severity": str(o.severity), "agent": o.agent, "domain": o.domain,
                     "summary": describe(o)} for o in found]


# -- the job ------------------------------------------------------------------------------------


async def health_profiling(ctx: JobContext) -> JobResult:
    with optimization_store(ctx) as store:
        config, inventory = effective(ctx, store)
    gate = GenerationGate.for_paths(ctx.paths, config.max_concurrent_generations)
    async with ModelClient(inventory, gate=gate, first_token_timeout_s=config.first_token_timeout_s) as client:
        reach, offered = await reachability(client, inventory)
        with served(ctx, inventory, reach) as started:
            if started:
                reach, offered = await reachability(client, inventory)
            reachable = [m for m, why in reach.items() if why is None]
            smoke = await smoke_set(ctx, config, inventory, client, reachable)
            memory, samples = server_memory(ctx, inventory)
    models = {m: smoke.get(m) or {"reachable": False, "reason": why} for m, why in reach.items()}
    health, opportunities = health_and_opportunities(ctx, config, inventory, offered, samples)
    return JobResult("success", {
        "smoke_set": [t.id for t in smoke_tasks(config.jobs.smoke_problems)],
        "reachable": len(reachable), "unreachable": sorted(m for m, why in reach.items() if why),
        "started_embedded": started, "models": models, "server_memory": memory,
        "health": health, "opportunities": opportunities,
    })  # fmt: skip
