"""Shared by the scheduler tests: a fake clock, counting jobs, schedulers on one file, the example package."""

from __future__ import annotations

import asyncio
import threading
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from kisystem.config import OptimizationConfig
from kisystem.models.inventory import parse_inventory
from kisystem.paths import Paths
from kisystem.schedule.registry import Registry
from kisystem.schedule.scheduler import Scheduler
from kisystem.schedule.store import JobRun
from kisystem.schedule.tasks import JobContext, OptimizationTask

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
EXAMPLE_PKG = Path(__file__).parent / "example_job_pkg"
INVENTORY = parse_inventory({
    "endpoints": {"e": {"backend": "openai", "base_url": "http://127.0.0.1:9"}},
    "models": [{"name": "small", "rank": 1, "timeout_s": 30, "endpoint": "e", "mode": "chat"}],
    "routes": {"Python/General": {"start": "small", "escalation": []}},
}, "schedule test inventory")  # fmt: skip


class FakeClock:
    """A clock that moves only when told (thread-safe enough: one assignment)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Calls:
    """Jobs that record when they ran (by the fake clock) and in which scheduler."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, datetime]] = []

    def job(self, name: str, trigger: str, *, sleep_s: float = 0.0, fail: BaseException | None = None,
            **kw: Any) -> OptimizationTask:  # fmt: skip
        def handler(ctx: JobContext) -> dict[str, Any]:
            with self.lock:
                self.seen.append((name, ctx.clock()))
            if sleep_s:
                threading.Event().wait(sleep_s)
            if fail is not None:
                raise fail
            return {"job": name, "at": ctx.clock().isoformat()}

        return OptimizationTask(name, kw.pop("agent", "tester"), trigger, handler, f"test job {name}", **kw)

    def times(self, name: str) -> list[datetime]:
        return [t for n, t in self.seen if n == name]

    def count(self, name: str) -> int:
        return len(self.times(name))


def paths_for(db: Path) -> Paths:
    return Paths(home=db.parent, db=db, config=None)


@contextmanager
def scheduler(db: Path, tasks: list[OptimizationTask], clock: FakeClock, **kw: Any) -> Iterator[Scheduler]:
    with Scheduler.open(paths_for(db), OptimizationConfig(), INVENTORY, registry=Registry(tasks), clock=clock,
                        **kw) as s:  # fmt: skip
        yield s


def cycle(s: Scheduler, **kw: Any) -> list[JobRun]:
    return asyncio.run(s.run_optimization_cycle(**kw))


def install_example(into: Path, entry_points: dict[str, str] | None = None, name: str = "kisystem_example_jobs",
                    ) -> Path:  # fmt: skip
    """Write the dist-info that installing ``example_job_pkg`` would (its entry points from its pyproject.toml,
    or ``entry_points``) into ``into``; the folder to put on sys.path / PYTHONPATH with EXAMPLE_PKG."""
    if entry_points is None:
        project = tomllib.loads((EXAMPLE_PKG / "pyproject.toml").read_text())["project"]
        entry_points = project["entry-points"]["kisystem.jobs"]
    info = into / f"{name}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[kisystem.jobs]\n{lines}")
    return into
