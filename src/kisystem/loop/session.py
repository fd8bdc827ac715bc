"""Everything one process needs to run tasks: store, model client, phase runner, supervisor."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import AsyncIterator, Callable

from kisystem.config import OptimizationConfig
from kisystem.errors import BackendUnreachable
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.profiling import TwoTierProfiler
from kisystem.loop.supervisor import LoopEvent, Supervisor
from kisystem.loop.workspace import WorkspaceKeeping
from kisystem.models.client import ModelClient
from kisystem.models.gate import GenerationGate
from kisystem.models.inventory import Inventory
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


def _base(name: str) -> str:
    """Ollama lists 'phi4:latest' where an inventory may say 'phi4'."""
    return name if ":" in name else f"{name}:latest"


@contextlib.asynccontextmanager
async def loop_session(config: OptimizationConfig, inventory: Inventory, paths: Paths, *,
                       db: Path | None = None, on_event: Callable[[LoopEvent], None] | None = None,
                       warn: Callable[[str], None] = log.warning) -> AsyncIterator[Supervisor]:
    """Open the store, start embedded models if the inventory has any, and yield a Supervisor."""
    phases = PhaseRunner(config)  # first: a sandbox below sandbox_min_level refuses before models start
    if phases.level is not SandboxLevel.BWRAP:
        warn(f"generated code runs in the {phases.level!s} sandbox: {describe_level(phases.level)}")
    with contextlib.ExitStack() as stack:
        if any(m.embedded for m in inventory.models.values()):
            stack.enter_context(EmbeddedFleet(inventory, paths.home, config_file=paths.config))
        store = stack.enter_context(LearningStore.open(db or paths.db))
        store.mark_interrupted(older_than_s=STALE_RUN_S)
        available = await available_models(inventory, warn)
        if not available:
            raise BackendUnreachable(f"no model of {inventory.source} is reachable; is the backend running?")
        meta = MetaSupervisor(store, config)
        routing = dict(policy=make_policy(config, store, inventory),
                       floor=HybridFloor(HybridDecision(meta, config.hybrid_decision_weights)),
                       hot_domains=lambda: [domain for domain, _ in meta.next_priorities(3)])
        gate = GenerationGate.for_paths(paths, config.max_concurrent_generations)
        async with ModelClient(inventory, gate=gate) as client:
            profiler = TwoTierProfiler.from_config(phases, config)
            keeping = WorkspaceKeeping(config.keep_workspaces, config.keep_failed_workspaces)
            attempts = AttemptRunner(phases, paths.workspaces_dir, profiler=profiler, keeping=keeping,
                                     temperatures=(config.sample_temperature, config.repair_temperature))
            yield Supervisor(config, inventory, client, store, attempts, on_event=on_event, available=available,
                             **routing)

