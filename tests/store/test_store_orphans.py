"""Runs whose process died: recorded owners, and ``close_orphaned_runs`` closing them at once."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kisystem.store import LearningStore, db
from kisystem.store.migrations import migrate
from kisystem.store.owner import Owner, gone_because, is_alive, process_start, this_process

T0 = datetime(2025, 11, 10, 12, 0, 0, tzinfo=UTC)
DAY_S = 86400.0
LINUX_PROC = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[LearningStore]:
    with LearningStore.open(tmp_path / "learning.db", clock=clock) as s:
        yield s


@pytest.fixture
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_child() -> Iterator[subprocess.Popen]:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def _set(store: LearningStore, run_id: str, **columns: object) -> None:
    conn = sqlite3.connect(store.path)
    with conn:
        assignments = ", ".join(f"{name} = ?" for name in columns)
        conn.execute(f"UPDATE runs SET {assignments} WHERE run_id = ?", (*columns.values(), run_id))
    conn.close()


def _owner_columns(store: LearningStore, run_id: str) -> tuple:
    conn = sqlite3.connect(store.path)
    row = conn.execute("SELECT owner_host, owner_boot, owner_pid, owner_started FROM runs WHERE run_id = ?",
                       (run_id,)).fetchone()  # fmt: skip
    conn.close()
    return tuple(row)


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def _outcome(store: LearningStore, run_id: str) -> str:
    run = store.get_run(run_id)
    assert run is not None
    return run.outcome


def test_start_run_records_this_process_as_owner(store: LearningStore) -> None:
    run_id = store.start_run("t", "Python/General", "m")
    me = this_process()
    assert _owner_columns(store, run_id) == (me.host, me.boot, os.getpid(), me.started)


def test_a_run_of_a_dead_process_is_closed_at_once(store: LearningStore, clock: FakeClock, dead_pid: int) -> None:
    run_id = store.start_run("killed", "Python/General", "m")
    _set(store, run_id, owner_pid=dead_pid)

    assert store.close_orphaned_runs() == [run_id]

    run = store.get_run(run_id)
    assert run is not None and run.outcome == "interrupted" and run.ended_ts == clock.now
    assert run.reason == f"process {dead_pid} died without recording an end (killed?)"
    assert store.events(run_id)[-1].kind == "interrupted"
    assert [(d.domain, d.runs) for d in store.domain_aggregates()] == [("Python/General", 1)]
    assert store.close_orphaned_runs() == []


def test_a_run_of_a_live_process_is_left_running(store: LearningStore, live_child: subprocess.Popen) -> None:
    mine = store.start_run("mine", "Python/General", "m")
    theirs = store.start_run("theirs", "Python/General", "m")
    _set(store, theirs, owner_pid=live_child.pid, owner_started=process_start(live_child.pid))

    assert store.close_orphaned_runs(stale_after_s=DAY_S) == []
    assert (_outcome(store, mine), _outcome(store, theirs)) == ("running", "running")


def test_a_live_owner_is_never_aged_out(store: LearningStore, clock: FakeClock) -> None:
    run_id = store.start_run("slow", "Python/General", "m")
    clock.now += timedelta(days=3)

    assert store.close_orphaned_runs(stale_after_s=DAY_S) == []
    assert _outcome(store, run_id) == "running"


@LINUX_PROC
def test_a_recycled_pid_does_not_keep_a_run_alive(store: LearningStore, live_child: subprocess.Popen) -> None:
    run_id = store.start_run("recycled", "Python/General", "m")
    _set(store, run_id, owner_pid=live_child.pid, owner_started=process_start(live_child.pid) - 1)

    assert store.close_orphaned_runs() == [run_id]


@LINUX_PROC
def test_an_unreaped_process_is_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_start(child.pid)
    try:
        deadline = time.monotonic() + 30
        while _state(child.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)  # it exits within moments and stays a zombie until wait()
        assert _state(child.pid) == "Z"
        assert not is_alive(child.pid, started)
    finally:
        child.wait()


def test_a_run_of_another_host_waits_for_the_stale_age(store: LearningStore, clock: FakeClock, dead_pid: int) -> None:
    run_id = store.start_run("elsewhere", "Python/General", "m")
    _set(store, run_id, owner_host="some-other-host", owner_pid=dead_pid)

    assert store.close_orphaned_runs(stale_after_s=DAY_S) == []
    clock.now += timedelta(days=2)
    assert store.close_orphaned_runs() == []  # no age given: only judged owners close
    assert store.close_orphaned_runs(stale_after_s=DAY_S) == [run_id]
    run = store.get_run(run_id)
    assert run is not None and run.reason == "no finish recorded (crash or kill)"


def test_a_run_from_before_a_reboot_is_closed(store: LearningStore) -> None:
    run_id = store.start_run("before reboot", "Python/General", "m")
    _set(store, run_id, owner_boot="an-earlier-boot")
    here = Owner(this_process().host, "this-boot", os.getpid(), None)

    assert gone_because(Owner(here.host, "an-earlier-boot", os.getpid(), None), here) == (
        f"process {os.getpid()} died without recording an end (the machine restarted)")
    if this_process().boot is not None:
        assert store.close_orphaned_runs() == [run_id]


def test_an_old_schema_row_without_owner_waits_for_the_stale_age(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "old.db"
    conn = db.connect(path)
    migrate(conn, target=5)
    conn.execute("INSERT INTO runs (run_id, task, domain, model, outcome, ts)"
                 " VALUES ('old', 't', 'Python/General', 'm', 'running', ?)", (T0.isoformat(),))  # fmt: skip
    conn.close()

    with LearningStore.open(path, clock=clock) as store:
        assert _owner_columns(store, "old") == (None, None, None, None)
        assert store.close_orphaned_runs(stale_after_s=DAY_S) == []
        clock.now += timedelta(days=2)
        assert store.close_orphaned_runs(stale_after_s=DAY_S) == ["old"]
        assert _outcome(store, "old") == "interrupted"


def test_nothing_to_close_takes_no_write_lock(store: LearningStore) -> None:
    store.start_run("mine", "Python/General", "m")
    writer = db.connect(store.path, busy_timeout_ms=0)
    writer.execute("BEGIN IMMEDIATE")
    try:
        assert store.close_orphaned_runs(stale_after_s=DAY_S) == []
        probe = db.connect(store.path, busy_timeout_ms=0)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            probe.execute("BEGIN IMMEDIATE")  # the lock really is held
        probe.close()
    finally:
        writer.execute("ROLLBACK")
        writer.close()


@LINUX_PROC
def test_a_process_closes_its_own_running_rows_and_only_those(store: LearningStore, tmp_path: Path) -> None:
    mine, other = store.start_run("a", "Python/General", "m"), store.start_run("c", "Python/General", "m")
    with sqlite3.connect(tmp_path / "learning.db") as conn:  # another live process's row
        conn.execute("UPDATE runs SET owner_pid = ? WHERE run_id = ?", (os.getppid(), other))
    store.close_own_runs("terminated by SIGHUP")
    store.close_own_runs("a second call finds nothing")
    outcomes = {r.run_id: (r.outcome, r.reason) for r in (store.get_run(i) for i in (mine, other))}
    assert outcomes[mine] == ("interrupted", "terminated by SIGHUP")
    assert outcomes[other] == ("running", None)
    assert [e.kind for e in store.events(mine)].count("interrupted") == 1
