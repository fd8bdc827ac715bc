"""The Queue page: tasks per state with ETA and PriorityEff, and the CSRF-checked cancel and retry buttons."""

from __future__ import annotations

import html
import json
import os
import re
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from kisystem.paths import HOME_ENV
from kisystem.queue.ordering import learned_ordering
from kisystem.store.queue import QueueStore, Submission
from kisystem.web.filters import secs
from kisystem.web.queue_view import OrderingSettings, queue_page, read_only_store
from kisystem.web.security import CSRF_COOKIE
from tests.web.support import NOW, Seeded, client
from tests.web.support_queue import CUDA, HOSTILE_QUEUED, seed_queue
from tests.web.test_pages import _rows, _table

HEADERS = ["Next", "ID", "Task", "Domain", "Model", "Attempts", "Lease", "ETA", "PriorityScore", "PriorityEff", "Runs",
           "Outcome", "Score", "Note", "Updated"]  # fmt: skip


@contextmanager
def _dashboard(s: Seeded) -> Iterator[TestClient]:
    """A client whose ordering reads the seeded fleet and config (as ``kisystem serve`` would hand them in)."""
    with client(s.path) as c:
        c.app.state.ordering_settings = OrderingSettings(s.db.config, s.db.inventory)
        yield c


def _cells(page: str, state: str) -> dict[str, dict[str, str]]:
    """Each row of a state's table by task name: {header: text}."""
    headers = HEADERS if state == "queued" else HEADERS[1:]
    return {row[2 if state == "queued" else 1]: dict(zip(headers, row, strict=False))
            for row in _rows(_table(page, f"tasks-{state}"))}  # fmt: skip


def _state(path: Path, task_id: int) -> tuple[str, int]:
    with QueueStore.open(path) as queue:
        task = queue.get(task_id)
    assert task is not None
    return task.state, task.attempts


def _token(c) -> str:
    c.get("/queue")
    token = c.cookies.get(CSRF_COOKIE)
    assert token
    return token


def test_tasks_by_state_with_eta_priority_lease_and_runs(seeded: Seeded) -> None:
    ids = seed_queue(seeded)
    with _dashboard(seeded) as c:
        page = c.get("/queue").text
    counts = dict(_rows(_table(page, "queue-states")))
    assert counts == {"queued": "3", "leased": "1", "running": "0", "succeeded": "0", "failed": "1", "exhausted": "0",
                      "cancelled": "1", "dead": "0"}  # fmt: skip
    queued = _cells(page, "queued")
    cuda = queued["cuda"]  # the static table, by hand: 30 s * 1.5 (CUDA) + 30 s; 80 / 75
    assert (cuda["Model"], cuda["ETA"], cuda["PriorityScore"], cuda["PriorityEff"]) == ("mistral:7b", "1 m 15 s",
                                                                                        "80.0", "1.067")
    with read_only_store(seeded.path) as store:  # the queue's own ordering, as `kisystem queue status` builds it
        ordering = learned_ordering(store, seeded.db.config, seeded.db.inventory)
    hostile = queued[HOSTILE_QUEUED]
    assert hostile["ETA"] == secs(ordering.eta("big", "Python/General")) and hostile["PriorityScore"] == "90.0"
    assert hostile["PriorityEff"] == f"{90.0 / ordering.eta('big', 'Python/General'):.3f}"
    # learned, by hand: big ended 2 Python runs (8 s, 4 s + 12 s), shrunk toward the static 180 s + 30 s
    assert hostile["ETA"] == secs((2 * 12.0 + 3 * 210.0) / 5) == "2 m 11 s"
    assert hostile["PriorityEff"] == "0.688"  # 90 / 130.8
    assert [queued[t]["Next"] for t in ("cuda", HOSTILE_QUEUED, "q1")] == ["1", "2", "3"]  # by PriorityEff
    leased = _cells(page, "leased")["q0"]
    with QueueStore.open(seeded.path) as queue:
        expires = queue.get(1).lease_expires
    assert leased["Lease"] == f"holder · lapsed {secs(NOW.timestamp() - expires)} ago" and leased["Attempts"] == "1/3"
    failed = _cells(page, "failed")["flaky"]
    assert (failed["Outcome"], failed["Score"], failed["Note"], failed["Runs"]) == ("failed", "0.0", "tests failed",
                                                                                   "run 1")
    assert f'href="/runs/{seeded.ids["solved"]}">run 1</a>' in page
    assert _cells(page, "cancelled")["q2"]["Note"] == "cancelled by user"
    forms = re.findall(r'action="/queue/(\d+)/(cancel|retry)"', page)
    assert sorted(forms) == sorted([(str(i), "cancel") for i in (1, 2, ids["cuda"], ids["hostile"])]
                                   + [("3", "retry"), (str(ids["flaky"]), "retry")])  # fmt: skip
    assert HOSTILE_QUEUED not in page and html.escape(HOSTILE_QUEUED) in page


def test_the_page_agrees_with_queue_status(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings loaded as the CLI loads them (no file: defaults, the embedded fleet) give the CLI's figures."""
    seed_queue(seeded)
    home = seeded.db.root
    env = {k: v for k, v in os.environ.items() if not k.startswith("KISYSTEM_")} | {HOME_ENV: str(home)}
    for name in [k for k in os.environ if k.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv(HOME_ENV, str(home))
    status = subprocess.run([sys.executable, "-m", "kisystem", "queue", "status", "--json"], check=False,
                            capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert status.returncode == 0, status.stderr
    upcoming = json.loads(status.stdout)["next"]
    with client(seeded.path) as c:
        page = c.get("/queue").text
    rows = _rows(_table(page, "tasks-queued"))
    assert [int(r[1].lstrip("#")) for r in rows] == [u["id"] for u in upcoming]
    for row, u in zip(rows, upcoming, strict=True):
        assert row[4] == (u["model"] or "") and row[7] == secs(u["eta_s"])
        assert (row[8], row[9]) == (f"{u['priority_score']:.1f}", f"{u['priority_eff']:.3f}")


def test_tables_are_bounded_and_queued_ones_in_claim_order(seeded: Seeded) -> None:
    seed_queue(seeded)
    with QueueStore.open(seeded.path, clock=lambda: seeded.db.clock().timestamp()) as queue:
        queue.add([Submission("id = 'x'", f"bulk{i}", CUDA, f"bulk{i}", priority=1.0) for i in range(5)])
        order = [c.id for c in _ordering(seeded).queue_order(queue.queued())]
    with _dashboard(seeded) as c:
        counts = {k: int(v) for k, v in _rows(_table(c.get("/queue").text, "queue-states"))}
        assert counts["queued"] == 8
        for shown in (8, 4, 1):
            page = queue_page(c.app.state.dashboard.db, counts, _ordering(seeded), NOW, shown=shown)
            (queued,) = [t for t in page.tables if t.state == "queued"]
            assert queued.count == 8 and [r.id for r in queued.rows] == order[:shown]
            assert [r.position for r in queued.rows] == list(range(1, shown + 1))
            assert all(len(t.rows) <= shown for t in page.tables)


def _ordering(s: Seeded):
    with read_only_store(s.path) as store:
        return learned_ordering(store, s.db.config, s.db.inventory)


def test_cancel_with_the_token_cancels_and_redirects(seeded: Seeded) -> None:
    ids = seed_queue(seeded)
    with _dashboard(seeded) as c:
        token = _token(c)
        done = c.post(f"/queue/{ids['cuda']}/cancel", data={"csrf_token": token}, follow_redirects=False)
        assert done.status_code == 303 and done.headers["location"] == f"/queue?done=cancel&task={ids['cuda']}"
        page = c.get(done.headers["location"]).text
        running = c.post("/queue/1/cancel", data={"csrf_token": token}, follow_redirects=False)  # a leased one
    assert _state(seeded.path, ids["cuda"]) == ("cancelled", 0)
    assert re.search(rf'<p class="flash" role="status">Task #{ids["cuda"]} cuda: cancelled.</p>', page)
    assert "cuda" in _cells(page, "cancelled") and "cuda" not in _cells(page, "queued")
    assert running.status_code == 303 and _state(seeded.path, 1)[0] == "cancelled"
    with QueueStore.open(seeded.path) as queue:
        last = queue.transitions(ids["cuda"])[-1]
    assert (last.from_state, last.to_state, last.note) == ("queued", "cancelled", "cancelled by user")
    assert last.ts == NOW.isoformat(timespec="microseconds")  # the dashboard's clock


def test_without_the_token_nothing_changes(seeded: Seeded) -> None:
    ids = seed_queue(seeded)
    with _dashboard(seeded) as c:
        assert c.post(f"/queue/{ids['cuda']}/cancel").status_code == 403  # no cookie, no token
        token = _token(c)
        assert c.post(f"/queue/{ids['cuda']}/cancel", data={}).status_code == 403  # the cookie alone
        assert c.post(f"/queue/{ids['cuda']}/cancel", data={"csrf_token": "forged"}).status_code == 403
        assert c.post("/queue/3/retry", data={"x": "1"}).status_code == 403
        cross = c.post(f"/queue/{ids['cuda']}/cancel", data={"csrf_token": token},
                       headers={"Origin": "http://evil.example"})  # fmt: skip
        assert cross.status_code == 403
        assert c.get(f"/queue/{ids['cuda']}/cancel").status_code == 405  # a GET never changes state
    assert _state(seeded.path, ids["cuda"]) == ("queued", 0) and _state(seeded.path, 3) == ("cancelled", 0)


def test_retry_a_cancelled_and_a_failed_task(seeded: Seeded) -> None:
    ids = seed_queue(seeded)
    assert _state(seeded.path, ids["flaky"]) == ("failed", 1)
    with _dashboard(seeded) as c:
        token = _token(c)
        for task_id in (3, ids["flaky"]):
            done = c.post(f"/queue/{task_id}/retry", data={"csrf_token": token})  # the redirect followed
            assert done.status_code == 200 and str(done.url).endswith(f"/queue?done=retry&task={task_id}")
        page = done.text
    assert _state(seeded.path, 3) == ("queued", 0) and _state(seeded.path, ids["flaky"]) == ("queued", 0)
    assert "Task #" in page and "flaky: queued again." in page
    assert {"q2", "flaky"} <= set(_cells(page, "queued")) and "tasks-failed" not in page


def test_unknown_bad_and_refused_ids_say_why(seeded: Seeded) -> None:
    ids = seed_queue(seeded)
    with _dashboard(seeded) as c:
        token = _token(c)
        unknown = c.post("/queue/999/cancel", data={"csrf_token": token})
        huge = c.post(f"/queue/{2**70}/retry", data={"csrf_token": token})
        bad = c.post("/queue/<i>x/cancel", data={"csrf_token": token})
        refused = c.post("/queue/1/retry", data={"csrf_token": token})  # leased: not retryable
        spoofed = c.get("/queue", params={"done": "<b>pwned</b>", "task": "1"}).text
    assert unknown.status_code == 404 and '<p class="error" role="alert">no queued task with id 999</p>' in unknown.text
    assert huge.status_code == 404 and f"no queued task with id {2**70}" in huge.text
    assert bad.status_code == 400 and "bad task id &#39;&lt;i&gt;x&#39;: expected a number" in bad.text
    assert refused.status_code == 409 and "task 1 is leased; only failed, exhausted, cancelled, dead" in refused.text
    assert "tasks-queued" in unknown.text  # the queue page itself, with the reason on top
    assert 'class="flash"' not in spoofed and "pwned" not in spoofed
    assert _state(seeded.path, 1) == ("leased", 1) and _state(seeded.path, ids["cuda"]) == ("queued", 0)


def test_a_database_without_a_queue_is_neither_shown_nor_migrated(tmp_path: Path) -> None:
    from kisystem.store import db
    from kisystem.store.migrations import migrate

    path = tmp_path / "v1.db"
    conn = db.connect(path)
    migrate(conn, target=1)
    conn.close()
    with client(path) as c:
        page = c.get("/queue")
        token = _token(c)
        refused = c.post("/queue/1/cancel", data={"csrf_token": token})
    assert page.status_code == 200 and "This database has no queue yet" in page.text
    assert refused.status_code == 404 and "no queued task with id 1" in refused.text
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 1


def test_an_empty_queue(tmp_path: Path) -> None:
    from kisystem.store import LearningStore

    LearningStore.open(tmp_path / "empty.db").close()
    with client(tmp_path / "empty.db") as c:
        page = c.get("/queue")
    assert page.status_code == 200 and "The queue is empty" in page.text and 'aria-current="page">Queue' in page.text
