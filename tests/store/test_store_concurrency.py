"""Several writers at once: processes (WAL + busy timeout), threads and asyncio."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from kisystem.store import LearningStore, RunResult

WRITER = """
import sys, time
from pathlib import Path
from kisystem.store import LearningStore, RunResult
path, name, n, start_at = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
time.sleep(max(0.0, start_at - time.time()))
with LearningStore.open(path) as store:
    for i in range(n):
        run_id = store.start_run(f"{name}-{i}", "Python/General", "m")
        store.append_event(run_id, "generate", {"i": i})
        store.finish_run(run_id, RunResult("m", 1, 90.0, "success"))
"""


def _counts(path: Path) -> tuple[int, int, int]:
    conn = sqlite3.connect(path)
    runs = conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    done = conn.execute("SELECT COUNT(*) FROM runs WHERE outcome = 'success'").fetchone()[0]
    events = conn.execute("SELECT COUNT(*) FROM run_events").fetchone()[0]
    return runs, done, events


def test_two_processes_do_not_lose_rows(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"  # not created yet: both race to create and migrate it
    start_at = f"{time.time() + 1.0}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), name, "50", start_at], stderr=subprocess.PIPE, text=True
        )
        for name in ("a", "b")
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert _counts(path) == (100, 100, 300)


def test_threads_sharing_one_store_and_owning_their_own(tmp_path: Path) -> None:
    path = tmp_path / "threads.db"
    shared = LearningStore.open(path)

    def work(store: LearningStore, name: str) -> None:
        for i in range(25):
            run_id = store.start_run(f"{name}-{i}", "Python/General", "m")
            store.finish_run(run_id, RunResult("m", 1, 90.0, "success"))

    def own(name: str) -> None:
        with LearningStore.open(path) as store:
            work(store, name)

    threads = [threading.Thread(target=work, args=(shared, f"s{k}")) for k in range(2)]
    threads += [threading.Thread(target=own, args=(f"o{k}",)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shared.close()
    assert _counts(path) == (100, 100, 200)


async def test_asyncio_thread_and_worker_threads(tmp_path: Path) -> None:
    with LearningStore.open(tmp_path / "async.db") as store:
        run_id = store.start_run("t", "Python/General", "m")
        await asyncio.gather(*(asyncio.to_thread(store.append_event, run_id, "tick", {"i": i}) for i in range(20)))
        store.append_event(run_id, "tock", {})
        kinds = [e.kind for e in store.events(run_id)]
    assert kinds.count("tick") == 20 and kinds[-1] == "tock"
