"""The daemon as a real process: killed (SIGKILL) or stopped (SIGTERM, SIGINT) in a job, then started again;
and two processes started together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kisystem.schedule.store import ScheduleStore
from tests.cli.support import kisystem
from tests.schedule.support import EXAMPLE_PKG, install_example

EXAMPLES = ("--only", "example-report", "--only", "example-slow")


def _env(tmp_path: Path, sleep_s: float) -> dict[str, str]:
    site = tmp_path / "site"
    if not site.exists():
        install_example(site)
    return {"PYTHONPATH": os.pathsep.join([str(EXAMPLE_PKG), str(site)]), "EXAMPLE_JOB_SLEEP": str(sleep_s),
            "EXAMPLE_JOB_MARKER": str(tmp_path / "started")}


def _daemon(home: Path, env: dict[str, str]) -> subprocess.Popen:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KISYSTEM_")}
    return subprocess.Popen([sys.executable, "-m", "kisystem", "--home", str(home), "schedule", "run", *EXAMPLES,
                             "--interval", "1"], env={**clean, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,  # SIGINT back to its default: a suite run as a background job starts with it
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # ignored  # fmt: skip


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the slow job never started"
        time.sleep(0.05)


def _runs(db: Path) -> list[tuple[str, str, str | None]]:
    with ScheduleStore.open(db) as store:
        return [(r.task, r.status, r.reason) for r in reversed(store.history())]


def test_a_sigkilled_daemon_restarted_loses_and_doubles_nothing(tmp_path: Path) -> None:
    home, db = tmp_path / "home", tmp_path / "home" / "learning.db"
    proc = _daemon(home, _env(tmp_path, 60))
    _wait_for(tmp_path / "started", proc)
    proc.kill()
    proc.communicate(timeout=30)
    with ScheduleStore.open(db) as store:
        slow = store.job("example-slow")
        assert slow.run_open and slow.lease_holder and str(proc.pid) in slow.lease_holder
        report = store.job("example-report")  # due after the slow job: the kill came first
        assert _runs(db) == [] and report.lease_holder is None and report.next_due <= store.now()

    again = kisystem(home, "schedule", "run", "--once", *EXAMPLES, "--json", env=_env(tmp_path, 0))
    assert again.returncode == 0, again.stderr
    assert sorted(json.loads(line)["task"] for line in again.stdout.splitlines()) == ["example-report", "example-slow"]
    assert "lease taken over" in again.stderr
    after = _runs(db)
    assert [r for r in after if r[0] == "example-slow"] == [("example-slow", "error", "interrupted"),
                                                            ("example-slow", "success", None)]
    assert [r for r in after if r[0] == "example-report"] == [
        ("example-report", "skipped", "no finished runs in the learning database yet")]
    with ScheduleStore.open(db) as store:
        assert "is gone" in store.history(task="example-slow")[1].error and not store.leases()

    third = kisystem(home, "schedule", "run", "--once", *EXAMPLES, "--json", env=_env(tmp_path, 0))
    assert third.returncode == 0 and third.stdout == "" and _runs(db) == after  # nothing was due twice


@pytest.mark.parametrize(("sig", "code", "why"), [(signal.SIGTERM, 143, "terminated by SIGTERM"),
                                                  (signal.SIGINT, 130, "the scheduler was stopped")])
def test_a_stopped_daemon_logs_the_job_interrupted_and_hands_it_back(tmp_path: Path, sig: int, code: int,
                                                                     why: str) -> None:  # fmt: skip
    home, db = tmp_path / "home", tmp_path / "home" / "learning.db"
    proc = _daemon(home, _env(tmp_path, 600))  # a job far longer than the wait below: stopping must not wait for it
    _wait_for(tmp_path / "started", proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: ")
    with ScheduleStore.open(db) as store:
        slow = store.job("example-slow")
        [stopped] = store.history(task="example-slow")
        assert slow.lease_holder is None and not slow.run_open and slow.next_due <= store.now()  # still due
    assert (stopped.status, stopped.reason, stopped.error) == ("error", "interrupted", why)
    again = kisystem(home, "schedule", "run-due", *EXAMPLES, "--json", env=_env(tmp_path, 0))
    assert sorted(r["task"] for r in json.loads(again.stdout)) == ["example-report", "example-slow"]


def test_two_processes_started_together_run_each_due_job_once(tmp_path: Path) -> None:
    home = tmp_path / "home"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KISYSTEM_")}
    env = {**clean, **_env(tmp_path, 1.0), "KISYSTEM_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-m", "kisystem", "schedule", "run-due", *EXAMPLES, "--json"],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    ran = sorted(r["task"] for out, _ in outs for r in json.loads(out))
    assert ran == ["example-report", "example-slow"]
    assert sorted(task for task, _, _ in _runs(home / "learning.db")) == ran
    assert len((tmp_path / "started").read_text().splitlines()) == 1  # the slow job started once
