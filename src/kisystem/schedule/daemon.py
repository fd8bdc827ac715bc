"""The scheduler as a long-running process, its display, and its hook into ``kisystem queue run``.

:func:`run_daemon` runs cycles until it is stopped: after each one it sleeps until the next job
falls due, at most ``interval_s`` (so jobs registered meanwhile by another process, or a lease
left by a killed one, are seen within that).  Stopping it (Ctrl-C, SIGTERM) cancels the running
job, which the scheduler logs as interrupted and hands back, still due; a SIGKILLed daemon's
lease is ended by the next scheduler that finds its process gone.  Either way a restart runs
every due job once: none is lost, none runs twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.status import Status

from kisystem.config import OptimizationConfig
from kisystem.errors import KisystemError
from kisystem.models.inventory import Inventory
from kisystem.paths import Paths
from kisystem.schedule.scheduler import JobEvent, OnEvent, Scheduler
from kisystem.schedule.store import JobRun

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 60.0
MIN_SLEEP_S = 1.0
CONTINUOUS = ("continuous",)
BETWEEN_TASKS_GAP_S = 30.0
SUMMARY_CHARS = 100

Sleep = Callable[[float], Awaitable[Any]]


@dataclass
class DaemonSummary:
    cycles: int = 0
    runs: list[JobRun] = field(default_factory=list)

    @property
    def statuses(self) -> Counter[str]:
        return Counter(run.status for run in self.runs)


async def run_daemon(scheduler: Scheduler, *, once: bool = False, interval_s: float = DEFAULT_INTERVAL_S,
                     only: Collection[str] | None = None, sleep: Sleep = asyncio.sleep,
                     max_cycles: int | None = None, on_idle: Callable[[float | None], None] | None = None,
                     ) -> DaemonSummary:  # fmt: skip
    """Run cycles until stopped (one with ``once``; ``max_cycles`` for tests); what ran."""
    summary = DaemonSummary()
    while True:
        try:
            summary.runs += await scheduler.run_optimization_cycle(only=only)
        except KisystemError as err:  # e.g. the database stayed locked: the next cycle tries again
            log.warning("scheduler cycle failed: %s", err)
        summary.cycles += 1
        if once or (max_cycles is not None and summary.cycles >= max_cycles):
            return summary
        wait = _wait_s(scheduler, only, interval_s)
        if on_idle is not None:
            on_idle(wait)
        await sleep(wait)


def _wait_s(scheduler: Scheduler, only: Collection[str] | None, interval_s: float) -> float:
    try:
        left = scheduler.seconds_to_next_due(only)
    except KisystemError as err:
        log.warning("cannot read when the next job is due: %s", err)
        left = None
    return max(MIN_SLEEP_S, min(interval_s, left if left is not None else interval_s))


class BetweenTasks:
    """Runs the due ``continuous`` jobs between queue tasks: one cycle at a time (a worker that finds
    one running goes on with its tasks), at most every ``gap_s`` seconds."""

    def __init__(self, scheduler: Scheduler, gap_s: float = BETWEEN_TASKS_GAP_S, triggers: Collection[str] = CONTINUOUS,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.scheduler, self.gap_s, self.triggers, self.clock = scheduler, gap_s, tuple(triggers), clock
        self.runs: list[JobRun] = []
        self._busy = False
        self._last = float("-inf")

    async def __call__(self) -> None:
        if self._busy or self.clock() - self._last < self.gap_s:
            return
        self._busy, self._last = True, self.clock()
        try:
            self.runs += await self.scheduler.run_optimization_cycle(triggers=self.triggers)
        except KisystemError as err:
            log.warning("scheduled jobs between queue tasks failed: %s", err)
        finally:
            self._busy = False


@contextmanager
def continuous_jobs(config: OptimizationConfig, inventory: Inventory, paths: Paths, *,
                    on_event: OnEvent | None = None) -> Iterator[BetweenTasks | None]:  # fmt: skip
    """The hook ``kisystem queue run`` awaits between tasks when ``enable_scheduled_jobs`` is set; else None."""
    if not config.enable_scheduled_jobs:
        yield None
        return
    with Scheduler.open(paths, config, inventory, on_event=on_event) as scheduler:
        yield BetweenTasks(scheduler)


def finished_lines(console: Console) -> OnEvent:
    """A display of one line per finished run (for ``kisystem queue run``, whose own view holds the terminal)."""

    def show(event: JobEvent) -> None:
        if event.kind == "finished" and event.run is not None:
            console.print(f"scheduled job {run_line(event.run)}", markup=False, highlight=False, soft_wrap=True)

    return show


class DaemonView:
    """A Rich status line on a terminal (what runs, what is due next); plain log lines otherwise.

    Every finished run is a line either way."""

    def __init__(self, console: Console, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.console = console
        self.clock = clock
        self.status: Status | None = None

    def __enter__(self) -> DaemonView:
        if self.console.is_terminal:
            self.status = self.console.status("scheduler starting")
            self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()

    def __call__(self, event: JobEvent) -> None:
        if event.kind == "started":
            self._update(f"running {event.task} ({event.detail}) since {self._now()}")
            if self.status is None:
                self._line(f"{event.task}: started ({event.detail})")
        elif event.kind == "finished" and event.run is not None:
            self._line(run_line(event.run))
        elif event.kind == "taken_over":
            self._line(f"{event.task}: lease taken over {event.detail}")
        elif event.kind == "log":
            self._line(f"{event.task}: {event.detail}")

    def idle(self, wait_s: float | None) -> None:
        if wait_s is not None:
            self._update(f"idle · next check in {span(wait_s)} (at {self._now(wait_s)})")

    def _update(self, text: str) -> None:
        if self.status is not None:
            self.status.update(text)

    def _line(self, text: str) -> None:
        self.console.print(f"{self._now()} {text}", markup=False, highlight=False, soft_wrap=True)

    def _now(self, plus_s: float = 0.0) -> str:
        return datetime.fromtimestamp(self.clock().timestamp() + plus_s).strftime("%Y-%m-%d %H:%M:%S")


def run_line(run: JobRun) -> str:
    """One line for a finished run: status, time taken, and what it found or why not."""
    catch_up = f", catch-up for {run.missed + 1} due times" if run.catch_up else ""
    head = f"{run.task}: {run.status} in {span(run.duration_s)}{catch_up}"
    if run.status == "error":
        return f"{head} · {run.error}"
    if run.status == "skipped":
        return f"{head} · {run.reason}"
    return f"{head} · {result_summary(run.result)}"


def result_summary(result: dict[str, Any], width: int = SUMMARY_CHARS) -> str:
    """``key=value`` pairs of a result's top level, cut to ``width`` characters."""
    parts = [f"{k}={_short(v)}" for k, v in result.items()]
    text = ", ".join(parts) or "(empty result)"
    return text if len(text) <= width else text[: width - 1] + "…"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return f"{{{len(value)} keys}}"
    if isinstance(value, list):
        return f"[{len(value)}]"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def span(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.0f} d"
