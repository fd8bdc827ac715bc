"""The scheduler: runs every due job once per cycle, each under a lease, a time limit and its own error.

:meth:`Scheduler.run_optimization_cycle` (seed D's name) brings the job rows in line with the
registry, ends lapsed leases (a killed scheduler's unfinished run is logged as interrupted), then
claims and runs the due jobs one after the other, oldest due first.  Jobs run one at a time on
purpose: they read the same database and some of them ask the models, so running them side by
side would only make each slower.  What keeps one job from holding up the others is its time
limit and that its failure is only logged:

* A coroutine handler runs under ``asyncio.timeout``; a plain function runs in a thread of its
  own with the deadline in its :class:`JobContext`.  A run past its time limit is logged as an
  error ``time limit X s exceeded``.  A thread cannot be stopped from outside, so one that
  overran keeps the job's lease (a watcher thread renews it) until it returns: the job never
  runs twice at once, in this process or another.
* A handler that raises is logged with its error (type and message; the traceback goes to the
  results log) and runs again at its next due time.
* After a run the job is due at its start + its interval, so however many due times passed
  while nothing ran (a month with the machine off), one catch-up run stands for all of them
  (``missed`` says how many); a run that was stopped (Ctrl-C, SIGTERM) leaves the job due.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kisystem import interrupts
from kisystem.config import OptimizationConfig
from kisystem.errors import KisystemError
from kisystem.models.inventory import Inventory
from kisystem.paths import Paths
from kisystem.schedule.holders import new_holder
from kisystem.schedule.registry import Registry, default_registry
from kisystem.schedule.store import (
    INTERRUPTED,
    Claim,
    JobRun,
    JobState,
    Outcome,
    ScheduleStore,
    lapse_reason,
    utc_now,
)
from kisystem.schedule.tasks import JobContext, JobResult, OptimizationTask
from kisystem.store.learning import LearningStore

log = logging.getLogger(__name__)

LEASE_MARGIN_S = 60.0  # a lease outlasts its job's time limit by this much
OVERRUN_BEAT_S = 15.0  # how often the lease of a thread past its time limit is renewed
TIME_LIMIT = "time limit"


class JobBusy(KisystemError):
    """The job is running now (here or in another scheduler)."""


@dataclass(frozen=True)
class JobEvent:
    """What the scheduler reports to a display: a job ``started``, ``finished`` (with its run),
    was ``taken_over`` from a scheduler that died, or ``log``\\ ged a line."""

    kind: str
    task: str
    run: JobRun | None = None
    detail: str = ""


OnEvent = Callable[[JobEvent], None]


class Scheduler:
    """Runs the jobs of ``registry`` against one learning database, as lease holder ``holder``."""

    def __init__(self, store: ScheduleStore, registry: Registry, *, config: OptimizationConfig,
                 inventory: Inventory, paths: Paths, learning: LearningStore, holder: str | None = None,
                 on_event: OnEvent | None = None) -> None:  # fmt: skip
        self.store, self.registry, self.learning = store, registry, learning
        self.config, self.inventory, self.paths = config, inventory, paths
        self.holder = holder or new_holder()
        self.on_event = on_event

    @classmethod
    @contextmanager
    def open(cls, paths: Paths, config: OptimizationConfig, inventory: Inventory, *,
             registry: Registry | None = None, clock: Callable[[], datetime] = utc_now, holder: str | None = None,
             on_event: OnEvent | None = None) -> Iterator[Scheduler]:  # fmt: skip
        """A scheduler on ``paths.db`` (the default registry unless one is given); closes its stores after."""
        jobs = registry if registry is not None else default_registry()
        with LearningStore.open(paths.db, clock=clock) as learning:  # one connection: the schedule shares it
            yield cls(ScheduleStore(learning.guarded), jobs, config=config, inventory=inventory, paths=paths,
                      learning=learning, holder=holder, on_event=on_event)  # fmt: skip

    @property
    def clock(self) -> Callable[[], datetime]:
        return self.store.now

    def register(self, task: OptimizationTask) -> OptimizationTask:
        """Add a job to this scheduler (seed D's ``engine.register``); it is due at once the first time."""
        self.registry.register(task)
        self.store.sync(task)
        return task

    # -- cycles ------------------------------------------------------------------------------

    async def run_optimization_cycle(self, *, only: Collection[str] | None = None,
                                     triggers: Collection[str] | None = None) -> list[JobRun]:  # fmt: skip
        """Run every due job once (of ``only`` / with one of ``triggers`` when given); the runs, in order."""
        self.sync()
        self.recover()
        runs: list[JobRun] = []
        for task in self.due(only=only, triggers=triggers):
            try:
                run = await self._run(task, manual=False)
            except KisystemError as err:  # the database, not the job: the other jobs still get their turn
                log.warning("scheduled job %s not run: %s", task.name, err)
                continue
            if run is not None:
                runs.append(run)
        return runs

    async def run_job(self, name: str) -> JobRun:
        """Run job ``name`` now, due or not; it is due next at now + its interval."""
        task = self.registry.get(name)
        self.store.sync(task)
        self.recover()
        run = await self._run(task, manual=True)
        if run is None:
            job = self.store.job(name)
            holder = job.lease_holder if job is not None else None
            mine = " (this process: its last run overran its time limit)" if holder == self.holder else ""
            raise JobBusy(f"scheduled job {name!r} is running already in {holder}{mine}; try again when it is done")
        return run

    def sync(self) -> list[JobState]:
        """Add the registered jobs the database does not know yet (due at once), update changed ones."""
        return [self.store.sync(task) for task in self.registry.registered()]

    def recover(self) -> list[JobRun]:
        """End every lapsed lease of another holder; the runs they left unfinished, logged as interrupted."""
        now, ended = self.clock(), []
        for job in self.store.leases():
            why = lapse_reason(job, now) if job.lease_holder != self.holder else None
            if why is None:
                continue
            run = self.store.take_over(job, why)
            self._emit(JobEvent("taken_over", job.name, run, f"from {job.lease_holder}: {why}"))
            if run is not None:
                ended.append(run)
        return ended

    def due(self, *, only: Collection[str] | None = None, triggers: Collection[str] | None = None,
            ) -> list[OptimizationTask]:  # fmt: skip
        """The registered jobs due now, oldest due first (a claim still checks that nobody holds them)."""
        now = self.clock()
        rows = {job.name: job for job in self.store.jobs()}
        due = [task for task in self.registry.registered()
               if task.name in rows and rows[task.name].next_due <= now
               and (only is None or task.name in only) and (triggers is None or task.trigger in triggers)]
        return sorted(due, key=lambda task: (rows[task.name].next_due, task.name))

    def seconds_to_next_due(self, only: Collection[str] | None = None) -> float | None:
        """Seconds until the next registered job (of ``only``) that nobody runs now falls due; None when none."""
        names = set(self.registry.names()) if only is None else set(only) & set(self.registry.names())
        dues = [job.next_due for job in self.store.jobs() if job.name in names and job.lease_holder is None]
        return max(0.0, (min(dues) - self.clock()).total_seconds()) if dues else None

    # -- one run -----------------------------------------------------------------------------

    async def _run(self, task: OptimizationTask, *, manual: bool) -> JobRun | None:
        claim = self.store.claim(task.name, self.holder, _lease_s(task), manual=manual)
        if claim is None:
            return None
        try:
            self._emit(JobEvent("started", task.name, detail=_started_note(claim)))
            outcome, thread = await self._execute(task, claim)
        except (asyncio.CancelledError, KeyboardInterrupt):  # stopped (Ctrl-C, SIGTERM): logged, handed back, due
            why = interrupts.reason("the scheduler was stopped")
            self._finished(self.store.finish(claim, Outcome("error", reason=INTERRUPTED, error=why), None))
            raise
        next_due = max(claim.started + timedelta(seconds=claim.interval_s), self.clock())
        run = self.store.finish(claim, outcome, next_due, keep_lease_s=_lease_s(task) if thread else None)
        if thread is not None:
            self._hold_while_running(task, thread)
        return self._finished(run)

    async def _execute(self, task: OptimizationTask, claim: Claim) -> tuple[Outcome, threading.Thread | None]:
        """Run the handler under its time limit: the outcome, and its thread if that is still running."""
        ctx = JobContext(self.config, self.inventory, self.paths, self.learning, self.clock,
                         time.monotonic() + task.time_limit_s, log=self._job_log(task.name))  # fmt: skip
        thread: threading.Thread | None = None
        try:
            async with asyncio.timeout(task.time_limit_s) as limit:
                if inspect.iscoroutinefunction(task.handler):
                    value = await task.handler(ctx)
                else:
                    thread, future = _in_thread(task, ctx)
                    value = await future
                    if inspect.isawaitable(value):
                        value = await value
        except TimeoutError as err:
            if not limit.expired():
                return _failed(err), None  # the handler's own timeout (a slow backend): a plain failure
            overran = thread if thread is not None and thread.is_alive() else None
            error = f"time limit {task.time_limit_s:g} s exceeded"
            log.warning("scheduled job %s: %s", task.name, error)
            return Outcome("error", reason=TIME_LIMIT, error=error), overran
        except Exception as err:
            log.warning("scheduled job %s failed: %s", task.name, _one_line(err))
            return _failed(err), None
        return _outcome_of(value), None

    def _hold_while_running(self, task: OptimizationTask, thread: threading.Thread) -> None:
        """Renew the lease of a job whose thread runs past its time limit; hand it back once the thread ends.

        Its run is logged already; should this process end first, the lease lapses with it."""

        def watch() -> None:
            try:
                while thread.is_alive():
                    thread.join(OVERRUN_BEAT_S)
                    if thread.is_alive():
                        self.store.extend(task.name, self.holder, _lease_s(task))
                self.store.release(task.name, self.holder)
            except Exception as err:  # the store was closed (the scheduler is done): the lease expires by itself
                log.debug("lease watcher of %s stopped: %s", task.name, err)

        threading.Thread(target=watch, name=f"kisystem-lease-{task.name}", daemon=True).start()

    def _job_log(self, name: str) -> Callable[[str], None]:
        return lambda line: self._emit(JobEvent("log", name, detail=line))

    def _finished(self, run: JobRun) -> JobRun:
        self._emit(JobEvent("finished", run.task, run))
        return run

    def _emit(self, event: JobEvent) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(event)
        except Exception:  # a display must never stop the scheduler
            log.exception("scheduler display failed")


def _lease_s(task: OptimizationTask) -> float:
    return task.time_limit_s + LEASE_MARGIN_S


def _in_thread(task: OptimizationTask, ctx: JobContext) -> tuple[threading.Thread, asyncio.Future[Any]]:
    """Start ``task``'s handler in a daemon thread (one past its limit must not hold the process at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(value: Any, error: BaseException | None) -> None:
        if future.done():  # given up on at the time limit
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)

    def work() -> None:
        try:
            value, error = task.handler(ctx), None
        except BaseException as exc:  # handed to the loop, which logs it as the run's error
            value, error = None, exc
        try:
            loop.call_soon_threadsafe(settle, value, error)
        except RuntimeError:  # the loop is gone (the process is stopping): nobody waits for this run any more
            pass

    thread = threading.Thread(target=work, name=f"kisystem-job-{task.name}", daemon=True)
    thread.start()
    return thread, future


def _outcome_of(value: Any) -> Outcome:
    """What the handler returned as an outcome; anything but a JobResult or a JSON-able mapping is an error."""
    if isinstance(value, JobResult):
        if value.status not in ("success", "skipped"):
            return Outcome("error", reason="bad result", error=f"JobResult status {value.status!r}: "
                                                                "a job returns success or skipped, or raises")
        status, result, reason = value.status, value.result, value.reason
        if status == "skipped" and not reason:
            reason = "no reason given"
    elif isinstance(value, Mapping):
        status, result, reason = "success", value, None
    else:
        return Outcome("error", reason="bad result",
                       error=f"the handler returned {type(value).__name__}, not a JobResult or a dict")
    try:
        data = json.loads(json.dumps(dict(result), default=str))
    except (TypeError, ValueError) as err:
        return Outcome("error", reason="bad result", error=f"the result is not JSON: {err}")
    return Outcome(status, data, reason)


def _failed(err: BaseException) -> Outcome:
    return Outcome("error", reason="failed", error=_one_line(err), traceback="".join(traceback.format_exception(err)))


def _one_line(err: BaseException) -> str:
    message = " ".join(str(err).split())
    return f"{type(err).__name__}: {message}" if message else type(err).__name__


def _started_note(claim: Claim) -> str:
    if claim.manual:
        return "run on request"
    return f"catch-up run for {claim.missed + 1} due times" if claim.missed else "due"
