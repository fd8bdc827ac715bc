"""The queue runner: asyncio workers that claim queued tasks and run each through the Supervisor.

Each worker claims the task the :class:`~kisystem.queue.ordering.Ordering` ranks first,
moves it to ``running`` and runs the supervisor loop on it.  Builds share the phase
runner's ``max_concurrent_builds`` semaphore and its one-profile-at-a-time lock (one
phase runner serves every worker); generations share a per-backend cap
(:class:`BackendGate`).  A heartbeat extends the leases of the tasks in flight; a task
whose lease was lost (cancelled by the user, or taken over after a lapse) is stopped.

Crash safety: every step that matters is a committed write, in this order: claim, start,
the attempt's run id (before the learning run starts), each model answer (before it is
used), the learning record, then the task's final state.  :meth:`QueueRunner.recover`
ends leases whose holder died (lapsed, or a process of this host that no longer exists),
adopts the result of a run that finished before its worker died, and marks a run left
``running`` by a dead attempt ``interrupted``, so the learning log gets one record per exit.

``KISYSTEM_QUEUE_KILL_AT`` (tests only) names a :data:`KILL_POINTS` step at which
:func:`crash_point` SIGKILLs the process.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import os
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kisystem.domains import DEFAULT_DOMAINS
from kisystem.errors import KisystemError
from kisystem.paths import QUEUE_KILL_ENV
from kisystem.loop.taskspec import TaskSpec, TaskSpecError, dump_task, load_task_text
from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.queue.answers import CachingGenerator
from kisystem.queue.ordering import Ordering
from kisystem.store.learning import LearningStore, RunResult, Sandbox
from kisystem.store.queue import Adopted, Claim, Lease, QueueStore, Submission

if TYPE_CHECKING:
    from kisystem.loop.supervisor import Generator, LoopEvent, Supervisor, TaskResult
    from kisystem.models.inventory import Inventory

log = logging.getLogger(__name__)

KILL_ENV = QUEUE_KILL_ENV
KILL_POINTS = ("after_claim", "during_generation", "after_build", "after_test", "before_record",
               "before_final_write")  # fmt: skip
STATE_OF_OUTCOME = {"success": "succeeded", "failed": "failed", "exhausted": "exhausted", "aborted": "failed"}
"""Supervisor outcomes that end a task; ``error`` and ``interrupted`` runs leave it to another attempt."""
RECOVER_EVERY_S = 2.0


def crash_point(name: str) -> None:
    """Test hook: die here, at once and without cleanup, when KISYSTEM_QUEUE_KILL_AT names this point."""
    if os.environ.get(KILL_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def new_holder() -> str:
    """A lease holder id: host, process id and a random token."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def holder_is_dead(holder: str | None) -> bool:
    """True for a holder of another process of this host that no longer exists."""
    host, _, rest = (holder or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseLost(KisystemError):
    """The runner no longer holds the lease of a task it was working on."""


class BackendGate:
    """At most ``cap`` generations at once per backend endpoint, across all workers."""

    def __init__(self, inner: Generator, inventory: Inventory | None = None, cap: int = 1) -> None:
        self.inner = inner
        self.inventory = inventory
        self.cap = cap
        self.peak: Counter[str] = Counter()
        self._busy: Counter[str] = Counter()
        self._slots: dict[str, asyncio.Semaphore] = {}

    def backend_of(self, model: str) -> str:
        if self.inventory is not None and model in self.inventory.models:
            return self.inventory.models[model].endpoint
        return model

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        backend = self.backend_of(request.model)
        async with self._slots.setdefault(backend, asyncio.Semaphore(self.cap)):
            self._busy[backend] += 1
            self.peak[backend] = max(self.peak[backend], self._busy[backend])
            try:
                return await self.inner.generate(request, on_text)
            finally:
                self._busy[backend] -= 1


class LinkedLearning:
    """The learning store as one attempt's supervisor sees it: the run id goes into the queue first."""

    def __init__(self, inner: LearningStore, queue: QueueStore, task_id: int, holder: str) -> None:
        self.inner = inner
        self.queue = queue
        self.task_id = task_id
        self.holder = holder

    def start_run(self, task: str, domain: str, model: str, sandbox: Sandbox | None = None,
                  judge: str | None = None) -> str:
        run_id = uuid.uuid4().hex
        if not self.queue.attach_run(self.task_id, self.holder, run_id):
            raise LeaseLost(f"queued task {self.task_id} is no longer held by this runner")
        return self.inner.start_run(task, domain, model, sandbox, run_id=run_id, judge=judge)

    def finish_run(self, run_id: str, result: RunResult) -> None:
        crash_point("before_record")
        self.inner.finish_run(run_id, result)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


SupervisorFactory = Callable[["Generator", Any, Callable[["LoopEvent"], None]], "Supervisor"]


def derive_supervisor(base: Supervisor) -> SupervisorFactory:
    """Per-task supervisors that share ``base``'s config, routing and phase runner (so its caps hold)."""

    def make(generator: Generator, store: Any, on_event: Callable[[LoopEvent], None]) -> Supervisor:
        sup = copy.copy(base)
        sup.generator, sup.store = generator, store
        sup.on_event = _both(base.on_event, on_event)
        return sup

    return make


def _both(first: Callable[[LoopEvent], None] | None, second: Callable[[LoopEvent], None]):
    if first is None:
        return second

    def call(event: LoopEvent) -> None:
        first(event)
        second(event)

    return call


@dataclass(frozen=True)
class QueueEvent:
    """What the runner reports to a display: a task's state, and the loop's step within it."""

    id: int
    task: str
    state: str
    detail: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunnerSettings:
    workers: int = 2
    lease_s: float = 60.0
    per_backend: int = 1
    poll_s: float = 0.5
    follow: bool = False  # keep waiting for new tasks instead of returning when the queue is drained
    refresh_s: float = 30.0  # how often the ordering re-reads the learning database


@dataclass
class RunSummary:
    claimed: int = 0
    recovered: int = 0
    replayed: int = 0  # model answers taken from the store instead of generated again
    generated: int = 0
    states: Counter[str] = field(default_factory=Counter)  # final or returned states this runner wrote


class QueueRunner:
    """Claims and runs queued tasks until the queue is drained (or forever with ``follow``)."""

    def __init__(self, queue: QueueStore, learning: LearningStore, supervise: SupervisorFactory,
                 generator: Generator, ordering: Callable[[], Ordering], *,
                 settings: RunnerSettings = RunnerSettings(), inventory: Inventory | None = None,
                 on_event: Callable[[QueueEvent], None] | None = None, holder: str | None = None,
                 between: Callable[[], Awaitable[None]] | None = None) -> None:  # fmt: skip
        self.queue, self.learning, self.supervise = queue, learning, supervise
        self.settings = settings
        self.gate = BackendGate(generator, inventory, settings.per_backend)
        self._domains = inventory.domains if inventory is not None else DEFAULT_DOMAINS
        self.holder = holder or new_holder()
        self.summary = RunSummary()
        self._ordering_source = ordering
        self._ordering = ordering()
        self._on_event = on_event
        self._between = between  # awaited by a worker after each task and while idle (scheduled jobs)
        self._inflight: dict[int, asyncio.Task[TaskResult]] = {}
        self._lost: set[int] = set()
        self._last_recover = self._last_refresh = float("-inf")

    async def run(self) -> RunSummary:
        self.recover()
        beat = asyncio.create_task(self._heartbeats())
        workers = [asyncio.create_task(self._worker()) for _ in range(self.settings.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            # gather gives up at the first worker that fails or is cancelled (an idle one, at
            # Ctrl-C or SIGTERM); the others must hand their tasks back and record their runs
            # before the caller closes the stores they write to.
            for task in (*workers, beat):
                task.cancel()
            await asyncio.gather(*workers, beat, return_exceptions=True)
        return self.summary

    # -- recovery ------------------------------------------------------------------------

    def recover(self) -> int:
        """Return lapsed tasks to the queue (or to dead, or to the result their run reached)."""
        self._last_recover = time.monotonic()
        now, taken = self.queue.now(), 0
        for lease in self.queue.active_leases():
            if lease.holder == self.holder or not _lapsed(lease, now):
                continue
            state = self.queue.take_over(lease, _why(lease, now), self._adoptable(lease.run_id))
            if state is not None:
                taken += 1
                self._emit(lease.id, lease.task, state, "recovered from a lapsed lease")
        self._close_unfinished_runs()
        self.summary.recovered += taken
        return taken

    def _adoptable(self, run_id: str | None) -> Adopted | None:
        run = self.learning.get_run(run_id) if run_id else None
        if run is None or run.outcome not in STATE_OF_OUTCOME:
            return None
        return Adopted(STATE_OF_OUTCOME[run.outcome], run.outcome, run.score_final, run.reason)

    def _close_unfinished_runs(self) -> None:
        for run_id in self.queue.unfinished_runs():
            self.learning.interrupt_run(run_id, "its queue attempt ended without a record (crash, kill or lost lease)")
            self.queue.close_run(run_id)

    # -- workers -------------------------------------------------------------------------

    async def _worker(self) -> None:
        while True:
            claim = self.queue.claim(self.holder, self.settings.lease_s, self._ordering.pick)
            if claim is not None:
                await self._run_claim(claim)
                await self._between_tasks()
                continue
            if not self.settings.follow and not self._inflight:
                return
            await asyncio.sleep(self.settings.poll_s)
            await self._between_tasks()
            if time.monotonic() - self._last_recover >= RECOVER_EVERY_S:
                self.recover()

    async def _between_tasks(self) -> None:
        """The caller's hook between tasks (due continuous scheduled jobs); its failure never stops the queue."""
        if self._between is None:
            return
        try:
            await self._between()
        except Exception:
            log.exception("the between-tasks hook failed")

    async def _run_claim(self, claim: Claim) -> None:
        crash_point("after_claim")
        self.summary.claimed += 1
        self._emit(claim.id, claim.task, "leased", f"attempt {claim.attempt}/{claim.max_attempts}")
        spec = self._start(claim)
        if spec is None:
            return
        try:
            result = await self._supervise(claim, spec)
        except asyncio.CancelledError:
            if claim.id not in self._lost:  # the runner itself is stopping: hand the task back
                self._release(claim, "runner stopped", charge=False)
                raise
            self._lose(claim, "cancelled or lease lost")
        except Exception as err:  # the loop crashed (its record says so): another attempt may do better
            if claim.id in self._lost or isinstance(err, LeaseLost):
                self._lose(claim, str(err))
            else:
                self._release(claim, f"{type(err).__name__}: {err}")
        else:
            crash_point("before_final_write")
            state = STATE_OF_OUTCOME.get(result.outcome, "failed")
            self._finish(claim, state, result.outcome, result.score, result.reason)
        finally:
            self._inflight.pop(claim.id, None)
            self._lost.discard(claim.id)

    def _start(self, claim: Claim) -> TaskSpec | None:
        """leased -> running with a readable spec; None when there is nothing to run."""
        if not self.queue.start(claim.id, self.holder):
            self._emit(claim.id, claim.task, "lost", "lease lost before start")
            return None
        try:
            spec = spec_from_text(claim.spec, f"queued task {claim.id}", self._domains)
        except TaskSpecError as err:  # e.g. its domain left the inventory since it was added
            self._finish(claim, "failed", "error", None, str(err))
            return None
        self._emit(claim.id, claim.task, "running")
        return spec

    async def _supervise(self, claim: Claim, spec: TaskSpec) -> TaskResult:
        generator = CachingGenerator(self.gate, self.queue, claim.id, lambda: crash_point("during_generation"))
        store = LinkedLearning(self.learning, self.queue, claim.id, self.holder)
        sup = self.supervise(generator, store, self._loop_events(claim))
        inner = asyncio.create_task(sup.run_task(spec, start_model=claim.model))
        self._inflight[claim.id] = inner
        try:
            return await inner
        finally:
            self.summary.replayed += generator.replayed
            self.summary.generated += generator.generated

    def _loop_events(self, claim: Claim) -> Callable[[LoopEvent], None]:
        def on_event(event: LoopEvent) -> None:
            if event.kind in ("build", "test"):
                crash_point(f"after_{event.kind}")
            detail = f"iter {event.iteration} · {event.model} · {event.kind}"
            self._emit(claim.id, claim.task, "running", detail, {"loop": event})

        return on_event

    def _finish(self, claim: Claim, state: str, outcome: str, score: float | None, reason: str) -> None:
        if self.queue.finish(claim.id, self.holder, state, outcome, score, reason):
            self.summary.states[state] += 1
            self._emit(claim.id, claim.task, state, reason, {"outcome": outcome, "score": score})
        else:
            self._emit(claim.id, claim.task, "lost", "lease lost before the final write")

    def _lose(self, claim: Claim, why: str) -> None:
        self._close_unfinished_runs()  # the attempt's run, now that its supervisor has stopped
        self._emit(claim.id, claim.task, "lost", why)

    def _release(self, claim: Claim, note: str, *, charge: bool = True) -> None:
        state = self.queue.release(claim.id, self.holder, note, charge=charge)
        if state is not None:
            self.summary.states[state] += 1
            self._emit(claim.id, claim.task, state, note)

    # -- heartbeats ----------------------------------------------------------------------

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.settings.lease_s / 3)
            try:
                self._beat()
            except KisystemError as err:  # e.g. the database stayed locked: try again next beat
                log.warning("queue heartbeat failed: %s", err)

    def _beat(self) -> None:
        ids = list(self._inflight)
        held = self.queue.heartbeat(self.holder, ids, self.settings.lease_s)
        for task_id in set(ids) - held:
            self._lost.add(task_id)
            self._inflight[task_id].cancel()
        if time.monotonic() - self._last_refresh >= self.settings.refresh_s:
            self._ordering = self._ordering_source()
            self._last_refresh = time.monotonic()

    def _emit(self, task_id: int, task: str, state: str, detail: str = "", data: dict[str, Any] | None = None) -> None:
        if self._on_event is None:
            return
        try:
            self._on_event(QueueEvent(task_id, task, state, detail, data or {}))
        except Exception:  # a display must never stop the queue
            log.exception("queue display failed")


def submission_for(spec: TaskSpec, *, source: str | None = None, key_space: str = "",
                   priority: float | None = None, model: str | None = None, max_attempts: int = 3) -> Submission:
    """A spec ready to queue.  Its idempotency key hashes the spec and the start model, within ``key_space``."""
    text = dump_task(spec)
    digest = hashlib.sha256(f"{text}\0{model or ''}".encode()).hexdigest()
    explicit = priority if priority is not None else spec.priority
    return Submission(text, spec.id, spec.domain, f"{key_space}:{digest}", source, explicit, model, max_attempts)


def spec_from_text(text: str, label: str, known_domains: Iterable[str] = DEFAULT_DOMAINS) -> TaskSpec:
    """A task spec from the TOML text the queue stored; errors name ``label``."""
    return load_task_text(text, label, known_domains)


def _lapsed(lease: Lease, now: float) -> bool:
    return (lease.expires is not None and lease.expires < now) or holder_is_dead(lease.holder)


def _why(lease: Lease, now: float) -> str:
    if lease.expires is not None and lease.expires < now:
        return f"lease of {lease.holder} expired"
    return f"holder {lease.holder} is gone"
