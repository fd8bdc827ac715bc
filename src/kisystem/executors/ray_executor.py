"""The Ray executor: each attempt runs as a Ray task on a node that serves its model.

Placement is by Ray custom resources.  A node declares the models it serves as
``{"model:<name>": N}`` (``kisystem ray node --serves NAME=N``), N being its generation
slots; an attempt on model X asks for ``{"model:X": 1}``, so it runs only where X is served
and at most N run there at once.  An attempt of a CUDA task also asks for a GPU.

The coordinator stays the only writer of the learning and queue databases: the task returns
the fresh answers, the events and the scored attempt (:class:`~kisystem.executors.worker.Outcome`),
and the coordinator commits the answers first (a re-run after a crash replays them), then
the events.  Ray's retries are off (``max_retries=0``): a worker or node that dies loses the
attempt, the run is recorded as an error and the queue's lease rules decide what runs again.
An attempt never hangs: a model no live node serves is skipped at once, a node that served
it and went down is waited for ``down_grace_s`` (with ``waiting`` events), and a submitted
task that does not finish in its budget is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kisystem.errors import BackendUnreachable, ModelNotFound
from kisystem.executors.base import AttemptJob, Emit, ExecutorError, require_ray
from kisystem.executors.worker import HttpModels, Outcome, WorkerKit, run_remote
from kisystem.loop.attempt import Attempt
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.base import Generation
from kisystem.queue.answers import CachingGenerator, request_key

if TYPE_CHECKING:
    from kisystem.loop.supervisor import Generator, Supervisor
    from kisystem.models.inventory import Inventory

MODEL_PREFIX = "model:"
CUDA_GPUS = 1.0  # a CUDA attempt holds a whole GPU: timings on a shared one would disturb each other
START_SLACK_S = 120.0  # on top of an attempt's own budget: scheduling, worker start, the judge's preparation
WAIT_NOTICE_S = 15.0
PHASE_RUNS = 3  # a phase runs at most 1 + its retries (retry_build = 2) times


def model_resource(model: str) -> str:
    """The Ray custom resource a node serving ``model`` declares (one unit per generation slot)."""
    return f"{MODEL_PREFIX}{model}"


def served_models(resources: Mapping[str, float]) -> dict[str, float]:
    """The models a node's (or the cluster's) resources declare, with their slots."""
    return {k[len(MODEL_PREFIX):]: v for k, v in resources.items() if k.startswith(MODEL_PREFIX)}


def needs_gpu(task: TaskSpec) -> bool:
    return task.language == "cuda"


def placement(task: TaskSpec, model: str, cpus: float) -> dict[str, Any]:
    """The Ray task options that put an attempt where its model is served (and a GPU is, for CUDA)."""
    return {"resources": {model_resource(model): 1}, "num_cpus": cpus,
            "num_gpus": CUDA_GPUS if needs_gpu(task) else 0}  # fmt: skip


def task_name(job: AttemptJob) -> str:
    """The Ray task's name, as ``kisystem ray status`` shows what runs where."""
    return f"kisystem:{job.task.id}:it{job.iteration}:{job.model}"


def attempt_budget(task: TaskSpec, model_timeout_s: float) -> float:
    """Seconds a submitted attempt may take before it is cancelled: a safety net, not a tight bound."""
    phases = sum(p.timeout_s for p in (task.build, task.test, task.profile) if p is not None)
    judge = task.judge.build.timeout_s if task.judge is not None and getattr(task.judge, "build", None) else 0.0
    return 4 * model_timeout_s + PHASE_RUNS * (phases + judge) + START_SLACK_S


@dataclass(frozen=True)
class RaySettings:
    address: str = "auto"  # auto: RAY_ADDRESS, else the cluster started on this machine
    cpus: float = 1.0  # per attempt (its build and test)
    timeout_s: float | None = None  # per submitted attempt; None: attempt_budget()
    down_grace_s: float = 60.0  # how long an attempt waits for a node serving its model to come back
    poll_s: float = 0.5  # how often a waiting attempt looks for a free slot
    watch_s: float = 5.0  # how often a submitted attempt's model is checked for a live node


class RayExecutor:
    """Runs attempts as Ray tasks; see the module docstring."""

    name = "ray"

    def __init__(self, models: Callable[[], Generator] | None = None, *, workspaces: Path | None = None,
                 settings: RaySettings = RaySettings(), ray: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        """``models``: a picklable factory of the worker's model client (None: :class:`HttpModels`
        of the supervisor's inventory); ``workspaces``: where workers make attempt directories
        (None: each node's own kisystem home); ``ray``: the Ray module (tests pass a fake)."""
        self.ray = ray or require_ray()
        self.clock = clock
        self.models = models
        self.workspaces = workspaces
        self.settings = settings
        self._kits: dict[tuple[int, ...], Any] = {}
        self._inflight: Counter[str] = Counter()
        self._down_since: dict[str, float] = {}
        self._remote: Any = None

    def total_slots(self) -> int:
        """Generation slots of every model on the live nodes: how many attempts can run at once."""
        self.connect()
        return int(sum(served_models(self.ray.cluster_resources()).values()))

    def available_models(self, inventory: Inventory, warn: Callable[[str], None]) -> set[str]:
        """The inventory's models some live node declares (``model:<name>``, by exact name).  On Ray
        the models live on the nodes, so the coordinator cannot check them itself: a declared model
        counts as available, one declared nowhere is skipped with a warning; none at all is an error."""
        self.connect()
        served = {m for n in self.ray.nodes() if n.get("Alive")
                  for m, slots in served_models(n.get("Resources", {})).items() if slots > 0}  # fmt: skip
        names = set(inventory.models)
        for missing in sorted(names - served):
            warn(f"model {missing!r} is served by no live node of the Ray cluster; it is skipped "
                 f"(start one with `kisystem ray node --serves {missing}`)")
        if not names & served:
            declared = ", ".join(sorted(served)) or "no model"
            raise BackendUnreachable(f"no model of {inventory.source} is served by a live node of the Ray cluster at "
                                     f"{self.settings.address} (its nodes declare {declared}); start one with "
                                     "`kisystem ray node --serves MODEL`")
        return names & served

    def connect(self) -> None:
        """Join the cluster at ``settings.address`` (once); a missing cluster is one clear error."""
        if self.ray.is_initialized():
            return
        _probe(self.settings.address)
        try:
            self.ray.init(address=self.settings.address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise BackendUnreachable(f"no Ray cluster at {self.settings.address}: {_first_line(err)} (start one with "
                                     "`kisystem ray node --serves MODEL`)") from None

    async def attempt(self, sup: Supervisor, job: AttemptJob, emit: Emit) -> Attempt:
        self.connect()
        cache = sup.generator if isinstance(sup.generator, CachingGenerator) else None
        profiler = sup.attempts.profiler
        state = profiler.run_state(job.run_id) if hasattr(profiler, "run_state") else None
        async with self._slot(job, emit):
            stored = self._stored(sup, job, cache)
            outcome = await self._run(self._kit(sup), job, stored, state, self._budget(sup, job))
        return self._commit(sup, job, outcome, cache, emit)

    # -- before: the stored answer, the kit, a slot ------------------------------------------

    def _stored(self, sup: Supervisor, job: AttemptJob, cache: CachingGenerator | None) -> dict[str, Generation]:
        """The answer the queue stored for this attempt's request, if any (a re-run after a crash)."""
        if cache is None:
            return {}
        spec = sup.inventory.model(job.model)
        request = sup.attempts.request_for(job.task, spec.name, spec.mode, job.feedback, job.tries_on_model,
                                           spec.max_tokens)  # fmt: skip
        key = request_key(request)
        answer = cache.replay(key)
        return {key: answer} if answer is not None else {}

    def _kit(self, sup: Supervisor) -> Any:
        """The worker kit of ``sup``'s configuration, put in the object store once."""
        key = (id(sup.config), id(sup.inventory), id(sup.attempts))
        if key not in self._kits:
            models = self.models or HttpModels(sup.inventory, sup.config.first_token_timeout_s)
            self._kits[key] = self.ray.put(WorkerKit.mirror(sup, models, self.workspaces))
        return self._kits[key]

    def _budget(self, sup: Supervisor, job: AttemptJob) -> float:
        if self.settings.timeout_s is not None:
            return self.settings.timeout_s
        return attempt_budget(job.task, sup.inventory.model(job.model).timeout_s)

    @contextlib.asynccontextmanager
    async def _slot(self, job: AttemptJob, emit: Emit) -> AsyncIterator[None]:
        """Wait for a free slot of the job's model, so a submitted task starts at once and its
        budget measures its work, not the queue in front of it."""
        started = noticed = self.clock()
        while self._inflight[job.model] >= self._slots(job):
            if self.clock() - noticed >= WAIT_NOTICE_S:
                noticed = self.clock()
                emit("waiting", seconds=round(noticed - started), persist=False,
                     reason=f"every Ray slot of {job.model} is busy")
            await asyncio.sleep(self.settings.poll_s)
        self._inflight[job.model] += 1
        try:
            yield
        finally:
            self._inflight[job.model] -= 1

    def _slots(self, job: AttemptJob) -> float:
        """The job's model's slots on live nodes that can run it; raises when there will be none."""
        alive, dead = _nodes_serving(self.ray.nodes(), job.model, needs_gpu(job.task), self.settings.cpus)
        if alive:
            self._down_since.pop(job.model, None)
            return sum(n["Resources"][model_resource(job.model)] for n in alive)
        if not dead:
            gpu = " with a GPU (a CUDA task)" if needs_gpu(job.task) else ""
            raise ModelNotFound(job.model, "the Ray cluster", f"no live node serves it{gpu}; start one with "
                                f"`kisystem ray node --serves {job.model}`")
        since = self._down_since.setdefault(job.model, self.clock())
        if self.clock() - since > self.settings.down_grace_s:
            hosts = ", ".join(sorted({n.get("NodeManagerAddress", "?") for n in dead}))
            raise BackendUnreachable(f"the Ray node serving {job.model} ({hosts}) has been down for over "
                                     f"{self.settings.down_grace_s:.0f} s")
        return 0.0

    # -- the task ------------------------------------------------------------------------------

    async def _run(self, kit: Any, job: AttemptJob, stored: dict[str, Generation], state: Any,
                   budget: float) -> Outcome:  # fmt: skip
        ref = self._remote_fn().options(**placement(job.task, job.model, self.settings.cpus),
                                        name=task_name(job)).remote(kit, job, stored, state)
        try:
            return await self._watched(ref, job, budget)
        except BaseException:  # timed out, the model's nodes gone, or the run cancelled: stop the task
            self._cancel(ref)
            raise

    async def _watched(self, ref: Any, job: AttemptJob, budget: float) -> Outcome:
        """The task's outcome; every ``watch_s`` a look at the model's nodes, so a task left pending
        by a node that died gives up after ``down_grace_s``, not after its whole budget."""
        where = f"attempt {job.iteration} of {job.task.id} on {job.model}"
        future, deadline = asyncio.wrap_future(ref.future()), time.monotonic() + budget
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # read, even once nobody waits
        while not future.done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise ExecutorError(f"{where} did not finish within {budget:.0f} s on the Ray cluster; "
                                    "it was cancelled")
            await asyncio.wait({future}, timeout=min(self.settings.watch_s, left))
            if not future.done():
                self._slots(job)  # raises once no live node will serve the model
        try:
            return future.result()
        except self.ray.exceptions.RayError as err:
            raise ExecutorError(f"{where} was lost on the Ray cluster: {type(err).__name__}: "
                                f"{_first_line(err)}") from None

    def _remote_fn(self) -> Any:
        if self._remote is None:  # kisystem's leases decide what runs again, never Ray
            self._remote = self.ray.remote(max_retries=0, retry_exceptions=False)(run_remote)
        return self._remote

    def _cancel(self, ref: Any) -> None:
        with contextlib.suppress(Exception):  # already finished or gone: nothing to stop
            self.ray.cancel(ref, force=True)

    # -- after: commit in the crash-safe order ----------------------------------------------------

    def _commit(self, sup: Supervisor, job: AttemptJob, outcome: Outcome, cache: CachingGenerator | None,
                emit: Emit) -> Attempt:  # fmt: skip
        """Answers first (committed: a crash after this replays them), then the events, then the result."""
        if cache is not None:
            for key, answer in outcome.answers:
                cache.keep(key, answer)
        emit("node", node=outcome.node.get("node_id"), host=outcome.node.get("host"), pid=outcome.node.get("pid"),
             sandbox=outcome.sandbox)
        for kind, data in outcome.events:
            emit(kind, **data)
        profiler = sup.attempts.profiler
        if outcome.profile_state is not None and hasattr(profiler, "restore"):
            profiler.restore(job.run_id, outcome.profile_state)
            profiler.history.extend(outcome.profile_records)
        if outcome.error is not None:
            raise outcome.error.restore(f"Ray node {outcome.node.get('host')}")
        assert outcome.attempt is not None
        return outcome.attempt


def _nodes_serving(nodes: list[dict[str, Any]], model: str, gpu: bool,
                   cpus: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """(live nodes that can run an attempt on ``model``, dead nodes that served it)."""
    key = model_resource(model)
    serving = [n for n in nodes if n.get("Resources", {}).get(key, 0) > 0]
    fit = [n for n in serving if n.get("Alive") and n["Resources"].get("CPU", 0) >= cpus
           and (not gpu or n["Resources"].get("GPU", 0) >= CUDA_GPUS)]  # fmt: skip
    dead = [n for n in serving if not n.get("Alive")]
    return fit, dead


def _probe(address: str, timeout_s: float = 5.0) -> None:
    """Fail at once where nothing listens at the head's address (``ray.init`` would retry for minutes)."""
    target = os.environ.get("RAY_ADDRESS", "") if address == "auto" else address
    host, _, port = target.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return  # auto without RAY_ADDRESS, or a form Ray resolves itself
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as err:
        raise BackendUnreachable(f"no Ray cluster at {target}: {err.strerror or err} (start one with "
                                 "`kisystem ray node --serves MODEL`)") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
