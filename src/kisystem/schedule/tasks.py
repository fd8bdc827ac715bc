"""What a scheduled job is: its trigger, its handler, and what the handler gets and gives back.

A handler is a plain function (or a coroutine function) of a :class:`JobContext`; it returns a
:class:`JobResult` (or a dict, taken as a successful result).  It raises to fail: the scheduler
logs the error with the run and tries again at the next due time.  A job that finds nothing to
do returns ``JobResult.skipped(reason)``.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Union

from kisystem.config import OptimizationConfig
from kisystem.errors import UsageError
from kisystem.models.inventory import Inventory
from kisystem.paths import Paths
from kisystem.store.learning import LearningStore

TRIGGERS: Mapping[str, timedelta] = {
    "continuous": timedelta(minutes=5),
    "cve": timedelta(days=1),
    "bi-weekly": timedelta(days=14),
    "monthly": timedelta(days=30),
    "quarterly": timedelta(days=90),
}  # fmt: skip
CUSTOM_PREFIX = "every:"  # a custom interval: "every:3600" (seconds)
DEFAULT_TIME_LIMIT_S = 600.0


def interval_of(trigger: str) -> timedelta:
    """The interval of a named trigger or of ``every:SECONDS``; a clear error for anything else."""
    if trigger in TRIGGERS:
        return TRIGGERS[trigger]
    if trigger.startswith(CUSTOM_PREFIX):
        try:
            seconds = float(trigger.removeprefix(CUSTOM_PREFIX))
        except ValueError:
            seconds = 0.0
        if seconds >= 1:
            return timedelta(seconds=seconds)
    raise UsageError(f"unknown trigger {trigger!r}: allowed are {', '.join(TRIGGERS)} or {CUSTOM_PREFIX}SECONDS "
                     "(at least 1)")


@dataclass(frozen=True)
class JobResult:
    """How one run of a job ended: ``success`` with a JSON-able result, or ``skipped`` with why."""

    status: str  # "success" | "skipped"
    result: Mapping[str, Any] = field(default_factory=dict)
    reason: str | None = None

    @classmethod
    def skipped(cls, reason: str, **result: Any) -> JobResult:
        return cls("skipped", result, reason)


@dataclass
class JobContext:
    """What a handler may use: the configuration, the fleet, the open learning database, the
    scheduler's clock, and its time limit (``time_left()``; a handler checks it between steps)."""

    config: OptimizationConfig
    inventory: Inventory
    paths: Paths
    store: LearningStore
    clock: Callable[[], datetime]
    deadline: float  # time.monotonic() by which the handler should be done
    log: Callable[[str], None] = lambda line: None

    @property
    def db(self) -> Path:
        return self.store.path

    def time_left(self) -> float:
        return self.deadline - time.monotonic()


Handler = Callable[[JobContext], Union[JobResult, Mapping[str, Any], Awaitable[Union[JobResult, Mapping[str, Any]]]]]


@dataclass(frozen=True)
class OptimizationTask:
    """A job the scheduler runs: seed D's ``OptimizationTask(name, agent, trigger, handler, description)``."""

    name: str
    agent: str  # who the job is about or done by, e.g. "routing", "models", "security"
    trigger: str  # a key of TRIGGERS or "every:SECONDS"
    handler: Handler
    description: str
    time_limit_s: float = DEFAULT_TIME_LIMIT_S

    def __post_init__(self) -> None:
        interval_of(self.trigger)  # a bad trigger fails at registration, not at the first run
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise UsageError(f"bad job name {self.name!r}: use letters, digits, '-' and '_'")

    @property
    def interval(self) -> timedelta:
        return interval_of(self.trigger)
