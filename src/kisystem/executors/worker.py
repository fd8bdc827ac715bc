"""What a remote worker does for one attempt, and what it hands back to the coordinator.

A worker writes no database.  It rebuilds the coordinator's attempt machinery from a
:class:`WorkerKit` (configuration, inventory, a picklable model factory, the attempt
runner's settings), runs the same :meth:`Supervisor.attempt_here` the local executor runs,
and returns an :class:`Outcome`: the fresh model answers, the events in the order they were
emitted, the scored attempt or the error, and where it ran.  The coordinator commits them.

Nothing here imports Ray (only :func:`run_remote` asks it where it runs), so the worker's
logic is tested without a cluster.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kisystem.config import OptimizationConfig, TwoTierProfiling
from kisystem.errors import KisystemError
from kisystem.executors.base import AttemptJob, ExecutorError
from kisystem.loop.attempt import Attempt, AttemptRunner, Reviewer
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.profiling import ProfileRecord, TwoTierProfiler
from kisystem.loop.scoring import PerformanceParser
from kisystem.loop.workspace import WorkspaceKeeping
from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.models.inventory import Inventory
from kisystem.paths import Paths
from kisystem.queue.answers import request_key

if TYPE_CHECKING:
    from kisystem.loop.supervisor import Generator, Supervisor

REMOTE_DIR = "ray"  # under the node's workspaces directory: one directory per remote attempt


@dataclass(frozen=True)
class HttpModels:
    """The default model factory: the inventory's endpoints as the worker's node reaches them
    (a node serving ``qwen2.5-coder:32b`` from its own Ollama answers on its own 127.0.0.1)."""

    inventory: Inventory
    first_token_timeout_s: float = 30.0

    def __call__(self) -> Generator:
        from kisystem.models.client import ModelClient

        return ModelClient(self.inventory, first_token_timeout_s=self.first_token_timeout_s)


@dataclass(frozen=True)
class WorkerKit:
    """Everything a worker needs to do an attempt as the coordinator would; picklable, so
    ``models`` must be a module-level class or function (a lambda does not travel)."""

    config: OptimizationConfig
    inventory: Inventory
    models: Callable[[], Generator]
    workspaces: Path | None = None  # None: the node's own kisystem home
    temperatures: tuple[float, float] = (0.8, 0.8)
    keeping: WorkspaceKeeping = field(default_factory=WorkspaceKeeping)
    reviewer: Reviewer | None = None
    parser: PerformanceParser | None = None
    profiling: TwoTierProfiling | None = None
    always_full: bool = False

    @classmethod
    def mirror(cls, sup: Supervisor, models: Callable[[], Generator], workspaces: Path | None = None) -> WorkerKit:
        """A kit whose attempts ask, build and score like ``sup``'s own attempt runner."""
        runner, profiler = sup.attempts, sup.attempts.profiler
        return cls(sup.config, sup.inventory, models, workspaces,
                   (runner.sample_temperature, runner.repair_temperature), runner.keeping, runner.reviewer,
                   runner.parser, getattr(profiler, "settings", None), getattr(profiler, "always_full", False))

    def root(self) -> Path:
        return (self.workspaces or Paths.resolve().workspaces_dir) / REMOTE_DIR

    def attempt_runner(self, root: Path) -> AttemptRunner:
        phases = PhaseRunner(self.config)  # this node's sandbox, detected here
        profiler = TwoTierProfiler(phases, self.profiling, always_full=self.always_full, parser=self.parser)
        return AttemptRunner(phases, root, parser=self.parser, profiler=profiler, temperatures=self.temperatures,
                             reviewer=self.reviewer)  # its directory is retired by run_job, per attempt


@dataclass(frozen=True)
class PortableError:
    """An exception as it crosses processes: kisystem's own come back as their class (so a
    model to skip is still skipped), anything else as an :class:`ExecutorError`."""

    module: str
    name: str
    message: str
    attrs: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, err: BaseException) -> PortableError:
        attrs = {k: v for k, v in vars(err).items() if isinstance(v, str | int | float | bool | type(None))}
        return cls(type(err).__module__, type(err).__qualname__, str(err), attrs)

    def restore(self, where: str) -> Exception:
        kind = _kisystem_error(self.module, self.name)
        if kind is None:
            return ExecutorError(f"the attempt failed on {where}: {self.name}: {self.message}")
        err = kind.__new__(kind)
        Exception.__init__(err, self.message)
        err.__dict__.update(self.attrs)
        return err


def _kisystem_error(module: str, name: str) -> type[KisystemError] | None:
    if module != "kisystem" and not module.startswith("kisystem."):
        return None
    try:
        kind = importlib.import_module(module)
        for part in name.split("."):
            kind = getattr(kind, part)
    except (ImportError, AttributeError):
        return None
    return kind if isinstance(kind, type) and issubclass(kind, KisystemError) else None


@dataclass
class Outcome:
    """One remote attempt, as the coordinator commits it: answers first, then events, then the result."""

    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    answers: list[tuple[str, Generation]] = field(default_factory=list)  # (request key, fresh answer)
    attempt: Attempt | None = None
    error: PortableError | None = None
    profile_state: Any = None  # the run's tier-trigger memory after this attempt
    profile_records: list[ProfileRecord] = field(default_factory=list)
    sandbox: str = ""
    node: dict[str, Any] = field(default_factory=dict)  # node_id, host, pid


class Replaying:
    """The node's model behind the answers the coordinator already stored: a stored answer
    is replayed, a fresh one is kept for the coordinator to commit."""

    def __init__(self, inner: Generator, stored: dict[str, Generation]) -> None:
        self.inner = inner
        self.stored = stored
        self.fresh: list[tuple[str, Generation]] = []

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        key = request_key(request)  # before the inner call: a client may rewrite the request
        if key in self.stored:
            answer = self.stored[key]
            if on_text:
                on_text(answer.text)
            return answer
        answer = await self.inner.generate(request, on_text)
        self.fresh.append((key, answer))
        return answer


async def run_job(kit: WorkerKit, job: AttemptJob, stored: dict[str, Generation],
                  profile_state: Any = None) -> Outcome:  # fmt: skip
    """Do ``job`` here and return what happened; errors are returned, not raised."""
    from kisystem.loop.supervisor import Supervisor

    outcome = Outcome()
    emit = lambda kind, **data: outcome.events.append((kind, data))  # noqa: E731
    root = kit.root() / f"{job.run_id}-{job.iteration}"
    model = kit.models()
    generator = Replaying(model, stored)
    try:
        attempts = kit.attempt_runner(root)
        outcome.sandbox = str(attempts.level)
        if profile_state is not None:
            attempts.profiler.restore(job.run_id, profile_state)
        sup = Supervisor(kit.config, kit.inventory, generator, None, attempts)  # type: ignore[arg-type]  # no store
        async with attempts.task_run(job.task, job.run_id):
            outcome.attempt = await sup.attempt_here(job, emit)
        outcome.profile_state = attempts.profiler.run_state(job.run_id)
        outcome.profile_records = list(attempts.profiler.history)
    except Exception as err:  # noqa: BLE001 - every error goes back to the coordinator, which decides
        outcome.error = PortableError.of(err)
    finally:
        outcome.answers = generator.fresh
        await _close(model)
        kit.keeping.retire(root.parent, root.name, solved=_solved(kit, job, outcome.attempt))
    return outcome


def _solved(kit: WorkerKit, job: AttemptJob, attempt: Attempt | None) -> bool:
    target = job.task.target_score if job.task.target_score is not None else kit.config.target_score
    return attempt is not None and attempt.score >= target


async def _close(model: Any) -> None:
    close = getattr(model, "aclose", None)
    if close is not None:
        await close()


def run_remote(kit: WorkerKit, job: AttemptJob, stored: dict[str, Generation], profile_state: Any = None) -> Outcome:
    """The Ray task's body: the attempt in a fresh event loop, and where it ran."""
    outcome = asyncio.run(run_job(kit, job, stored, profile_state))
    outcome.node = {"node_id": _node_id(), "host": socket.gethostname(), "pid": os.getpid()}
    return outcome


def _node_id() -> str | None:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside a Ray worker (tests): no node id
        return None
