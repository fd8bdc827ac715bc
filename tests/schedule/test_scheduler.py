"""The scheduler with a fake clock: triggers, catch-up, leases between schedulers, failures, time limits."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest

from kisystem.errors import UsageError
from kisystem.schedule.holders import holder_gone, new_holder
from kisystem.schedule.scheduler import JobBusy
from kisystem.schedule.store import ScheduleStore
from kisystem.schedule.tasks import TRIGGERS, JobContext, JobResult, OptimizationTask, interval_of
from tests.schedule.support import T0, Calls, FakeClock, cycle, scheduler

DAY_TRIGGERS = ("cve", "bi-weekly", "monthly", "quarterly")


def test_minute_triggers_fire_at_their_interval(tmp_path: Path) -> None:
    calls, clock = Calls(), FakeClock()
    jobs = [calls.job("improve", "continuous"), calls.job("ten-min", "every:600")]
    with scheduler(tmp_path / "l.db", jobs, clock) as s:
        for _ in range(61):  # one hour, a cycle a minute
            cycle(s)
            clock.advance(minutes=1)
    assert calls.times("improve") == [T0 + timedelta(minutes=5 * k) for k in range(13)]
    assert calls.times("ten-min") == [T0 + timedelta(minutes=10 * k) for k in range(7)]


def test_day_triggers_fire_at_their_interval(tmp_path: Path) -> None:
    calls, clock = Calls(), FakeClock()
    with scheduler(tmp_path / "l.db", [calls.job(t, t) for t in DAY_TRIGGERS], clock) as s:
        for _ in range(181 * 4 + 1):  # half a year, a cycle every 6 hours
            cycle(s)
            clock.advance(hours=6)
    for trigger in DAY_TRIGGERS:
        every = TRIGGERS[trigger]
        assert calls.times(trigger) == [T0 + k * every for k in range(int(timedelta(days=181) / every) + 1)], trigger
    assert [calls.count(t) for t in DAY_TRIGGERS] == [182, 13, 7, 3]


def test_a_month_of_downtime_is_one_catch_up_run_per_job(tmp_path: Path) -> None:
    calls, clock = Calls(), FakeClock()
    with scheduler(tmp_path / "l.db", [calls.job(t, t) for t in TRIGGERS], clock) as s:
        assert len(cycle(s)) == 5
        clock.advance(days=30, minutes=1)  # the machine was off
        runs = {run.task: run for run in cycle(s)}
        assert cycle(s) == []  # no burst of the missed runs
        jobs = {job.name: job for job in s.store.jobs()}
    assert sorted(runs) == ["bi-weekly", "continuous", "cve", "monthly"]  # quarterly is not due yet
    assert {t: r.missed for t, r in runs.items()} == {"continuous": 8639, "cve": 29, "bi-weekly": 1, "monthly": 0}
    assert runs["continuous"].catch_up and not runs["monthly"].catch_up
    assert all(calls.count(t) == 2 for t in runs) and calls.count("quarterly") == 1
    for name in runs:
        assert jobs[name].next_due == clock.now + interval_of(name)  # the schedule restarts from the catch-up run


def _cycle_in_thread(db: Path, jobs, clock: FakeClock, barrier: threading.Barrier, out: list) -> None:
    with scheduler(db, jobs, clock) as s:
        barrier.wait()
        out.extend(cycle(s))


def test_two_schedulers_started_together_run_each_due_job_once(tmp_path: Path) -> None:
    calls, clock, db = Calls(), FakeClock(), tmp_path / "l.db"
    jobs = [calls.job(f"job-{i}", "continuous", sleep_s=0.1) for i in range(6)]
    barrier, results = threading.Barrier(2), [[], []]
    threads = [threading.Thread(target=_cycle_in_thread, args=(db, jobs, clock, barrier, results[i])) for i in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(calls.seen) == sorted((f"job-{i}", T0) for i in range(6))  # each once
    assert sorted(r.task for r in results[0] + results[1]) == [f"job-{i}" for i in range(6)]
    assert results[0] and results[1], "both schedulers got work (they ran side by side, not one after the other)"
    with ScheduleStore.open(db) as store:
        assert len(store.history()) == 6 and not store.leases()


def test_a_crashing_job_is_logged_and_does_not_stop_the_others(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                              ) -> None:  # fmt: skip
    calls, clock = Calls(), FakeClock()

    async def async_crash(ctx: JobContext) -> dict:
        raise RuntimeError("async trouble")

    jobs = [calls.job("a-crash", "cve", fail=ValueError("boom\nsecond line")), calls.job("b-fine", "cve"),
            OptimizationTask("c-async", "tester", "cve", async_crash, "crashes too")]  # fmt: skip
    with caplog.at_level(logging.WARNING), scheduler(tmp_path / "l.db", jobs, clock) as s:
        runs = {r.task: r for r in cycle(s)}
        clock.advance(hours=23)
        assert cycle(s) == []  # a failed job waits for its next due time, like any other
        clock.advance(hours=1)
        again = [r.task for r in cycle(s)]
    assert runs["a-crash"].status == "error" and runs["a-crash"].error == "ValueError: boom second line"
    assert "Traceback" in runs["a-crash"].traceback and "boom" in runs["a-crash"].traceback
    assert runs["c-async"].error == "RuntimeError: async trouble"
    assert runs["b-fine"].status == "success" and runs["b-fine"].result == {"job": "b-fine", "at": T0.isoformat()}
    assert again == ["a-crash", "b-fine", "c-async"]  # retried at the next due time
    failed = [r.getMessage() for r in caplog.records if "a-crash" in r.getMessage()]
    assert failed == ["scheduled job a-crash failed: ValueError: boom second line"] * 2  # one line a run


def test_an_async_job_past_its_time_limit_is_stopped_and_logged(tmp_path: Path) -> None:
    async def forever(ctx: JobContext) -> dict:
        await asyncio.sleep(30)
        return {}

    async def own_timeout(ctx: JobContext) -> dict:
        raise TimeoutError("the backend did not answer")

    jobs = [OptimizationTask("slow", "t", "cve", forever, "never ends", time_limit_s=0.2),
            OptimizationTask("own", "t", "cve", own_timeout, "times out by itself", time_limit_s=5)]
    with scheduler(tmp_path / "l.db", jobs, FakeClock()) as s:
        started = time.monotonic()
        runs = {r.task: r for r in cycle(s)}
        took = time.monotonic() - started
        assert not s.store.leases()
    assert took < 5
    assert (runs["slow"].status, runs["slow"].reason, runs["slow"].error) == (
        "error", "time limit", "time limit 0.2 s exceeded")
    assert (runs["own"].reason, runs["own"].error) == ("failed", "TimeoutError: the backend did not answer")


def test_a_thread_past_its_time_limit_keeps_the_lease_until_it_returns(tmp_path: Path) -> None:
    release, clock, db = threading.Event(), FakeClock(), tmp_path / "l.db"

    def stubborn(ctx: JobContext) -> dict:
        release.wait(30)  # ignores ctx.time_left()
        return {"done": True}

    job = OptimizationTask("stubborn", "t", "every:10", stubborn, "overruns", time_limit_s=0.2)
    with scheduler(db, [job], clock) as s, scheduler(db, [job], clock) as other:
        [run] = cycle(s)
        assert (run.status, run.error) == ("error", "time limit 0.2 s exceeded")
        clock.advance(seconds=30)  # due again, but its thread still runs
        assert cycle(other) == [] and cycle(s) == []
        with pytest.raises(JobBusy, match="running already"):
            asyncio.run(other.run_job("stubborn"))
        release.set()
        deadline = time.monotonic() + 10
        while s.store.leases() and time.monotonic() < deadline:  # the thread returned: its lease is handed back
            time.sleep(0.02)
        assert [r.status for r in cycle(other)] == ["success"]


def test_a_stopped_run_is_logged_as_interrupted_and_stays_due(tmp_path: Path) -> None:
    started, clock = threading.Event(), FakeClock()

    async def long(ctx: JobContext) -> dict:
        started.set()
        await asyncio.sleep(30)
        return {}

    async def stop_it(s) -> None:
        task = asyncio.create_task(s.run_optimization_cycle())
        while not started.is_set():
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    with scheduler(tmp_path / "l.db", [OptimizationTask("long", "t", "monthly", long, "long")], clock) as s:
        asyncio.run(stop_it(s))
        [run] = s.store.history()
        job = s.store.job("long")
    assert (run.status, run.reason, run.error) == ("error", "interrupted", "the scheduler was stopped")
    assert job.lease_holder is None and not job.run_open and job.next_due <= clock.now


def test_the_lease_of_a_dead_or_expired_holder_is_taken_over_once(tmp_path: Path) -> None:
    calls, clock, db = Calls(), FakeClock(), tmp_path / "l.db"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_holder = new_holder().split(":")
    dead_holder[1:3] = [dead.stdout.strip(), "1"]
    with scheduler(db, [calls.job("a", "cve"), calls.job("b", "cve")], clock) as s:
        s.sync()
        assert s.store.claim("a", ":".join(dead_holder), 600)  # a scheduler that died in the run
        assert s.store.claim("b", "elsewhere:1:1:x", 600)  # another host's, that stopped renewing
        clock.advance(seconds=1)
        assert [r.task for r in cycle(s)] == ["a"]
        runs = s.store.history(task="a")[::-1]
        assert [(r.status, r.reason) for r in runs] == [("error", "interrupted"), ("success", None)]
        assert "its process" in runs[0].error and "is gone" in runs[0].error and runs[0].started == T0
        clock.advance(seconds=601)  # b's lease expires
        assert [r.task for r in cycle(s)] == ["b"]
        runs = s.store.history(task="b")[::-1]
        assert [(r.status, r.reason) for r in runs] == [("error", "interrupted"), ("success", None)]
        assert "lease expired" in runs[0].error
        assert cycle(s) == [] and calls.count("a") == calls.count("b") == 1


def test_holders_of_live_processes_are_not_gone() -> None:
    assert holder_gone(new_holder()) is None
    assert holder_gone("another-host:1:1:abc") is None
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        mine = new_holder().split(":")
        with open(f"/proc/{proc.pid}/stat") as f:
            start = f.read().rpartition(")")[2].split()[19]
        live = ":".join([mine[0], str(proc.pid), start, "x"])
        assert holder_gone(live) is None
        assert holder_gone(":".join([mine[0], str(proc.pid), str(int(start) + 1), "x"])) is not None  # pid reused
    finally:
        proc.kill()
        proc.wait()
    assert "is gone" in holder_gone(live)


def test_a_manual_run_runs_at_once_and_moves_the_schedule(tmp_path: Path) -> None:
    calls, clock = Calls(), FakeClock()
    with scheduler(tmp_path / "l.db", [calls.job("monthly", "monthly")], clock) as s:
        cycle(s)
        clock.advance(days=3)
        run = asyncio.run(s.run_job("monthly"))
        job = s.store.job("monthly")
        with pytest.raises(UsageError, match="no scheduled job 'nope'; known jobs: monthly"):
            asyncio.run(s.run_job("nope"))
    assert run.manual and run.status == "success" and calls.count("monthly") == 2
    assert job.next_due == clock.now + timedelta(days=30)


def test_results_skipped_and_bad_values(tmp_path: Path) -> None:
    class Odd:
        def __str__(self) -> str:
            return "odd"

    def skip(ctx: JobContext) -> JobResult:
        return JobResult.skipped("pip-audit needs the network", checked=0)

    jobs = [OptimizationTask("skip", "t", "cve", skip, "skips"),
            OptimizationTask("none", "t", "cve", lambda ctx: None, "returns nothing"),
            OptimizationTask("odd", "t", "cve", lambda ctx: {"when": T0, "what": Odd()}, "not JSON"),
            OptimizationTask("bad-status", "t", "cve", lambda ctx: JobResult("error"), "bad status")]
    with scheduler(tmp_path / "l.db", jobs, FakeClock()) as s:
        runs = {r.task: r for r in cycle(s)}
    assert (runs["skip"].status, runs["skip"].reason, runs["skip"].result) == (
        "skipped", "pip-audit needs the network", {"checked": 0})
    assert runs["none"].status == "error" and "returned NoneType" in runs["none"].error
    assert runs["odd"].status == "success" and runs["odd"].result == {"when": str(T0), "what": "odd"}
    assert runs["bad-status"].status == "error" and "status 'error'" in runs["bad-status"].error


def test_a_changed_trigger_counts_from_the_last_start(tmp_path: Path) -> None:
    calls, clock, db = Calls(), FakeClock(), tmp_path / "l.db"
    with scheduler(db, [calls.job("j", "monthly")], clock) as s:
        cycle(s)
    clock.advance(days=2)
    with scheduler(db, [calls.job("j", "cve")], clock) as s:
        assert [r.task for r in cycle(s)] == ["j"]
        assert s.store.job("j").trigger == "cve"
