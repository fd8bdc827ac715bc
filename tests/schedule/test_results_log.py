"""The results log: history per task and window, success rates, last results; append-only rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kisystem.schedule.tasks import JobContext, JobResult, OptimizationTask
from tests.schedule.support import T0, FakeClock, cycle, scheduler


def _scripted(name: str, script: list[str]) -> OptimizationTask:
    """A daily job whose runs end as ``script`` says, in order: success, error or skipped."""
    left = list(script)

    def handler(ctx: JobContext) -> JobResult:
        status = left.pop(0)
        if status == "error":
            raise ValueError(f"{name} failed")
        return JobResult.skipped("nothing to do") if status == "skipped" else JobResult("success", {"n": len(left)})

    return OptimizationTask(name, "tester", "cve", handler, f"scripted {name}")


@pytest.fixture
def logged(tmp_path: Path):
    """Job a ran on days 0-2 (success, error, skipped), job b on days 0-10 (all but day 4 successful)."""
    clock = FakeClock()
    jobs = [_scripted("a", ["success", "error", "skipped"]),
            _scripted("b", ["success"] * 4 + ["error"] + ["success"] * 6)]
    with scheduler(tmp_path / "l.db", jobs, clock) as s:
        for day in range(11):
            cycle(s, only=None if day < 3 else ["b"])
            clock.advance(days=1)
        clock.advance(hours=-12)  # now: day 10, 12:00 + 12 h
        yield s.store


def test_history_of_the_last_days_newest_first(logged) -> None:
    recent = logged.history(days=3)
    assert [(r.task, r.started.day - T0.day) for r in recent] == [("b", 10), ("b", 9), ("b", 8)]
    a = logged.history(days=30, task="a")
    assert [r.status for r in a] == ["skipped", "error", "success"]
    assert a[0].reason == "nothing to do" and a[1].error == "ValueError: a failed" and a[2].result == {"n": 2}
    assert logged.history(days=1, task="a") == []
    assert len(logged.history()) == 14 and len(logged.history(limit=5)) == 5


def test_success_rate_counts_successes_among_runs_that_did_something(logged) -> None:
    stats = {s.task: s for s in logged.stats()}
    assert (stats["a"].runs, stats["a"].successes, stats["a"].errors, stats["a"].skipped) == (3, 1, 1, 1)
    assert stats["a"].success_rate == 0.5
    assert (stats["b"].runs, stats["b"].errors) == (11, 1) and stats["b"].success_rate == pytest.approx(10 / 11)
    assert stats["a"].last.status == "skipped" and stats["b"].last.status == "success"
    recent = {s.task: s for s in logged.stats(days=5)}
    assert list(recent) == ["b"] and recent["b"].success_rate == 1.0
    assert stats["a"].to_json()["success_rate"] == 0.5


def test_last_result_per_task(logged) -> None:
    last = logged.last_results()
    assert {t: (r.status, r.started.day - T0.day) for t, r in last.items()} == {
        "a": ("skipped", 2), "b": ("success", 10)}


def test_the_results_log_is_append_only_and_checked(logged) -> None:
    conn = sqlite3.connect(logged.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE schedule_runs SET status = 'success'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM schedule_runs")
    insert = ("INSERT INTO schedule_runs (task, agent, status, reason, error, started, finished)"
              " VALUES ('a', 't', ?, ?, ?, 'x', 'x')")
    for bad in (("skipped", None, None), ("error", "failed", None), ("crashed", None, "x")):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(insert, bad)
