"""Everything one process needs to run tasks: store, model client, phase runner, supervisor."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import AsyncIterator, Callable

from kisystem import interrupts
from kisystem.config import OptimizationConfig
from kisystem.executors.base import Executor
from kisystem.errors import BackendUnreachable
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.profiling import TwoTierProfiler
from kisystem.loop.supervisor import LoopEvent, Supervisor
from kisystem.improve import guardian
from kisystem.improve.feedback import FeedbackLoop
from kisystem.improve.recorder import FeedbackRecorder
from kisystem.improve.resources import ServerWatch
from kisystem.improve.teacher import Teacher
from kisystem.improve.versions import OptimizationStore, apply_active
from kisystem.loop.workspace import WorkspaceKeeping
from kisystem.models.client import ModelClient
from kisystem.models.gate import GenerationGate
from kisystem.models.inventory import Inventory
from kisystem.models.resilience import ResilientClient, Revive
from kisystem.models.server import EmbeddedFleet
from kisystem.paths import Paths
from kisystem.routing.hybrid import HybridDecision, HybridFloor
from kisystem.routing.meta import MetaSupervisor
from kisystem.routing.policy import make_policy
from kisystem.sandbox import SandboxLevel, describe_level
from kisystem.store.learning import LearningStore

log = logging.getLogger(__name__)
STALE_RUN_S = 24 * 3600  # a 'running' row older than this belongs to a process that died


async def available_models(inventory: Inventory, warn: Callable[[str], None] = log.warning) -> set[str]:
    """Models the inventory names that their endpoint says it has; unreachable endpoints warn."""
    client = ModelClient(inventory)
    found: set[str] = set()
    try:
        for endpoint in inventory.endpoints.values():
            names = [m.name for m in inventory.models.values() if m.endpoint == endpoint.name]
            try:
                listed = set(await client.adapter_for(names[0]).list_models()) if names else set()
            except BackendUnreachable as err:
                warn(f"skipping {', '.join(names)}: {err}")
                continue
            found |= {n for n in names if n in listed or _base(n) in {_base(m) for m in listed}}
            for missing in sorted(set(names) - found):
                warn(f"model {missing!r} is not on {endpoint.base_url}; it is skipped")
    finally:
        await client.aclose()
    return found


async def reachable_models(inventory: Inventory, warn: Callable[[str], None] = log.warning,
                           executor: Executor | None = None) -> set[str]:
    """The models attempts can use: asked of each endpoint from this process, or, where the
    executor's models live on other hosts (Ray: the nodes that declare them), of the executor."""
    declared = getattr(executor, "available_models", None)
    if declared is not None:
        return declared(inventory, warn)
    return await available_models(inventory, warn)


def _reviver(fleet: EmbeddedFleet | None, warn: Callable[[str], None]) -> Revive | None:
    """The fleet's restart of a dead server, said in one line.  It blocks the event loop for
    the few seconds of a restart: started from a worker thread, the new server would get its
    parent-death signal when that thread ends."""
    if fleet is None:
        return None

    async def revive(model: str) -> bool:
        started = time.monotonic()
        if not fleet.revive(model):
            return False
        warn(f"the embedded server of {model} had died; restarted it in {time.monotonic() - started:.0f} s "
             "and retried the iteration")
        return True

    return revive


def _active_configuration(config: OptimizationConfig, inventory: Inventory, db: Path,
                          warn: Callable[[str], None]) -> tuple[OptimizationConfig, Inventory]:
    """The routing and tuning of the configuration version auto-optimization kept, if any."""
    with OptimizationStore.open(db) as versions:
        active = versions.active()
        if active is not None:
            warn(f"configuration version {active.id} is active ({active.reason}); `kisystem config versions` "
                 "lists the versions, `kisystem config rollback 0` restores the shipped one")
        return apply_active(config, inventory, versions, warn)


def _top_domains(meta: MetaSupervisor, top: int) -> list[str]:
    """The ``top`` domains by P(d), or none while the record has no more domains than that
    (every domain would be "top", which says nothing)."""
    ranked = meta.next_priorities(top + 1)
    return [domain for domain, _ in ranked[:top]] if len(ranked) > top else []


def _base(name: str) -> str:
    """Ollama lists 'phi4:latest' where an inventory may say 'phi4'."""
    return name if ":" in name else f"{name}:latest"


@contextlib.asynccontextmanager
async def loop_session(config: OptimizationConfig, inventory: Inventory, paths: Paths, *,
                       db: Path | None = None, on_event: Callable[[LoopEvent], None] | None = None,
                       warn: Callable[[str], None] = log.warning,
                       on_fleet: Callable[[str, str], None] | None = None,
                       executor: Executor | None = None) -> AsyncIterator[Supervisor]:
    """Open the store, start embedded models if the inventory has any, and yield a Supervisor
    whose attempts run on ``executor`` (default: here)."""
    phases = PhaseRunner(config)  # first: a sandbox below sandbox_min_level refuses before models start
    if phases.level is not SandboxLevel.BWRAP:
        warn(f"generated code runs in the {phases.level!s} sandbox: {describe_level(phases.level)}")
    with contextlib.ExitStack() as stack:
        store = stack.enter_context(LearningStore.open(db or paths.db))  # a bad database fails before models load
        store.close_orphaned_runs(stale_after_s=STALE_RUN_S)
        config, inventory = _active_configuration(config, inventory, db or paths.db, warn)
        fleet = None
        if any(m.embedded for m in inventory.models.values()):
            fleet = stack.enter_context(EmbeddedFleet(inventory, paths.home, config_file=paths.config,
                                                      on_progress=on_fleet))
        available = await reachable_models(inventory, warn, executor)
        if not available:
            raise BackendUnreachable(f"no model of {inventory.source} is reachable; is the backend running?")
        meta = MetaSupervisor(store, config)
        routing = dict(policy=make_policy(config, store, inventory),
                       floor=HybridFloor(HybridDecision(meta, config.hybrid_decision_weights)),
                       hot_domains=lambda: _top_domains(meta, 3))
        gate = GenerationGate.for_paths(paths, config.max_concurrent_generations)
        async with ModelClient(inventory, gate=gate, first_token_timeout_s=config.first_token_timeout_s) as client:
            generator = ResilientClient(client, cooldown_s=config.backend_cooldown_s,
                                        failures_before_cooldown=config.backend_failures_before_cooldown,
                                        revive=_reviver(fleet, warn))
            profiler = TwoTierProfiler.from_config(phases, config)
            keeping = WorkspaceKeeping(config.keep_workspaces, config.keep_failed_workspaces)
            attempts = AttemptRunner(phases, paths.workspaces_dir, profiler=profiler, keeping=keeping,
                                     temperatures=(config.sample_temperature, config.repair_temperature),
                                     reviewer=guardian.review if config.static_analysis else None)
            feedback = FeedbackLoop(store, config.feedback)
            watch = (ServerWatch(fleet, store, paths.models_dir, forward=on_event, slots=config.ensemble.llama_slots)
                     if fleet else on_event)
            teacher = Teacher(feedback, forward=watch) if config.lessons_in_prompts else None
            recorder = FeedbackRecorder(feedback, forward=teacher or watch)  # every run feeds improve/
            try:
                yield Supervisor(config, inventory, generator, store, attempts, on_event=recorder,
                                 available=available, lessons=teacher.lessons if teacher else None,
                                 executor=executor, **routing)
            except BaseException:  # a signal or a crash ends every run of this process: none stays 'running'
                store.close_own_runs(interrupts.reason("interrupted: the session ended"))
                raise

