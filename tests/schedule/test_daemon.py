"""The daemon loop (fake clock and sleep), the hook `kisystem queue run` awaits between tasks, the display."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from kisystem.config import OptimizationConfig
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.supervisor import Supervisor
from kisystem.queue.ordering import Ordering
from kisystem.queue.runner import QueueRunner, RunnerSettings, derive_supervisor
from kisystem.schedule.daemon import BetweenTasks, DaemonView, continuous_jobs, run_daemon
from kisystem.schedule.tasks import JobContext, OptimizationTask
from kisystem.store.learning import LearningStore
from kisystem.store.queue import QueueStore
from tests.queue.support import INVENTORY as QUEUE_INVENTORY
from tests.queue.support import DeterministicModel, submissions
from tests.schedule.support import T0, Calls, FakeClock, paths_for, scheduler


def _daemon(s, clock: FakeClock, waits: list[float], **kw):
    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        clock.advance(seconds=seconds)

    return asyncio.run(run_daemon(s, sleep=sleep, **kw))


def test_the_daemon_sleeps_until_the_next_due_job_at_most_its_interval(tmp_path: Path) -> None:
    calls, clock, waits = Calls(), FakeClock(), []
    with scheduler(tmp_path / "l.db", [calls.job("improve", "continuous"), calls.job("cve", "cve")], clock) as s:
        summary = _daemon(s, clock, waits, interval_s=60, max_cycles=7)
    assert waits == [60.0] * 6
    assert calls.times("improve") == [T0, T0.replace(minute=5)] and calls.count("cve") == 1
    assert summary.cycles == 7 and summary.statuses == {"success": 3}


def test_with_a_long_interval_the_daemon_wakes_when_a_job_falls_due(tmp_path: Path) -> None:
    calls, clock, waits = Calls(), FakeClock(), []
    with scheduler(tmp_path / "l.db", [calls.job("improve", "continuous"), calls.job("cve", "cve")], clock) as s:
        _daemon(s, clock, waits, interval_s=3600, max_cycles=4)
        assert _daemon(s, clock, [], once=True, only=["cve"]).runs == []  # --once: one cycle, no sleep
    assert waits == [300.0] * 3 and calls.count("improve") == 4


def test_between_tasks_runs_only_continuous_jobs_and_not_too_often(tmp_path: Path) -> None:
    calls, clock, ticks = Calls(), FakeClock(), iter([0.0, 0.0, 10.0, 40.0, 40.0])
    jobs = [calls.job("improve", "continuous"), calls.job("audit", "cve")]
    with scheduler(tmp_path / "l.db", jobs, clock) as s:
        hook = BetweenTasks(s, gap_s=30, clock=lambda: next(ticks))
        asyncio.run(hook())
        clock.advance(minutes=5)
        asyncio.run(hook())  # 10 s later: too soon, nothing asked
        asyncio.run(hook())
    assert calls.count("improve") == 2 and calls.count("audit") == 0
    assert [r.task for r in hook.runs] == ["improve", "improve"]


def test_continuous_jobs_hook_only_when_enabled(tmp_path: Path) -> None:
    paths = paths_for(tmp_path / "l.db")
    with continuous_jobs(OptimizationConfig(), QUEUE_INVENTORY, paths) as hook:
        assert hook is None and not paths.db.exists()
    with continuous_jobs(replace(OptimizationConfig(), enable_scheduled_jobs=True), QUEUE_INVENTORY, paths) as hook:
        assert isinstance(hook, BetweenTasks) and hook.triggers == ("continuous",)


async def test_the_queue_runner_awaits_the_hook_between_tasks_and_survives_its_failure(tmp_path: Path) -> None:
    seen: list[int] = []

    async def hook() -> None:
        seen.append(len(seen))
        raise RuntimeError("a scheduled job display broke")

    cfg = OptimizationConfig()
    model = DeterministicModel(wrong_first=False)
    with LearningStore.open(tmp_path / "q.db") as learning, QueueStore.open(tmp_path / "q.db") as queue:
        queue.add(submissions(2))
        base = Supervisor(cfg, QUEUE_INVENTORY, model, learning, AttemptRunner(PhaseRunner(cfg), tmp_path / "ws"))
        runner = QueueRunner(queue, learning, derive_supervisor(base), model, Ordering,
                             settings=RunnerSettings(workers=1, poll_s=0.02), inventory=QUEUE_INVENTORY,
                             between=hook)  # fmt: skip
        summary = await runner.run()
    assert summary.states == {"succeeded": 2} and seen == [0, 1]


def _talking(ctx: JobContext) -> dict:
    ctx.log("halfway")
    return {"said": 1}


def test_the_view_writes_a_plain_line_per_run_off_a_terminal(tmp_path: Path) -> None:
    calls, clock = Calls(), FakeClock()
    console = Console(record=True, width=60, force_terminal=False)
    view = DaemonView(console, clock=clock)
    jobs = [calls.job("ok", "cve"), calls.job("bad", "cve", fail=OSError("disk")),
            OptimizationTask("talk", "t", "cve", _talking, "logs a line")]
    with view, scheduler(tmp_path / "l.db", jobs, clock, on_event=view) as s:
        _daemon(s, clock, [], once=True)
    lines = console.export_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [  # one line each, however narrow the console
        "bad: started (due)", "bad: error in 0.0 s · OSError: disk",
        "ok: started (due)", "ok: success in 0.0 s · job=ok, at=2026-03-01T12:00:00+00:00",
        "talk: started (due)", "talk: halfway", "talk: success in 0.0 s · said=1"]


def test_the_view_keeps_a_status_line_on_a_terminal(tmp_path: Path) -> None:
    clock = FakeClock()
    console = Console(record=True, width=100, force_terminal=True)
    with DaemonView(console, clock=clock) as view, scheduler(tmp_path / "l.db", [Calls().job("ok", "cve")], clock,
                                                             on_event=view) as s:  # fmt: skip
        assert view.status is not None
        _daemon(s, clock, [], once=True)
        view.idle(90)
        assert "next check in 2 min" in str(view.status.renderable.text)
    text = console.export_text()
    assert "ok: success in 0.0 s" in text and "ok: started" not in text  # a start shows in the status line only
