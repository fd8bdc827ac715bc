"""Example third-party scheduled jobs (see pyproject.toml for how they are declared).

``example-report`` (hourly) sums up the learning database's finished runs per domain.
``example-slow`` (hourly, from ``more_tasks``) works for ``EXAMPLE_JOB_SLEEP`` seconds
(default 0), touching the file ``EXAMPLE_JOB_MARKER`` (if set) when it starts: the
daemon tests kill and stop a scheduler while it runs.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from kisystem.schedule.tasks import JobContext, JobResult, OptimizationTask

SLEEP_ENV = "EXAMPLE_JOB_SLEEP"
MARKER_ENV = "EXAMPLE_JOB_MARKER"


def report(ctx: JobContext) -> JobResult:
    stats = ctx.store.domain_stats()
    if not stats:
        return JobResult.skipped("no finished runs in the learning database yet", db=str(ctx.db))
    return JobResult("success", {"domains": {s.domain: {"runs": s.runs, "success_rate": s.success_rate}
                                             for s in stats}})


def slow(ctx: JobContext) -> dict:
    marker = os.environ.get(MARKER_ENV)
    if marker:
        with Path(marker).open("a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")
    seconds = float(os.environ.get(SLEEP_ENV, "0"))
    end = time.monotonic() + seconds
    while time.monotonic() < end and ctx.time_left() > 0:  # a well-behaved job checks its deadline
        time.sleep(0.05)
    return {"slept_s": seconds, "pid": os.getpid()}


REPORT = OptimizationTask("example-report", "example", "every:3600", report,
                          "Finished runs and success rate per domain, from the learning database")


def more_tasks() -> list[OptimizationTask]:
    return [OptimizationTask("example-slow", "example", "every:3600", slow, "Works for EXAMPLE_JOB_SLEEP seconds")]
