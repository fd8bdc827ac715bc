"""QueueStore: legal transitions only (every pair walked), atomic claims, leases, attempts, idempotency."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from collections import deque
from pathlib import Path

import pytest

from kisystem.store.migrations import QUEUE_STATES, QUEUE_TRANSITIONS
from kisystem.store.queue import (
    LEGAL,
    Adopted,
    IllegalTransition,
    QueueCommandRefused,
    QueueStore,
    QueueTaskNotFound,
    StoredAnswer,
    Submission,
    is_legal,
)

FIRST = lambda cands: min(cands, key=lambda c: c.id)  # noqa: E731


class Clock:
    def __init__(self, t: float = 1_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def sub(i: int, **kw) -> Submission:
    return Submission(f"id = 't{i}'", f"t{i}", "Python/General", f"k{i}", **kw)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def queue(tmp_path: Path, clock: Clock):
    with QueueStore.open(tmp_path / "q.db", clock=clock) as q:
        yield q


def path_to(state: str) -> list[str]:
    """The shortest legal path from queued to ``state``."""
    paths, todo = {"queued": ["queued"]}, deque(["queued"])
    while todo:
        here = todo.popleft()
        for a, b in QUEUE_TRANSITIONS:
            if a == here and b not in paths:
                paths[b] = [*paths[here], b]
                todo.append(b)
    return paths[state]


def force(conn: sqlite3.Connection, task_id: int, state: str) -> None:
    conn.execute("UPDATE queue_tasks SET state = ? WHERE id = ?", (state, task_id))


def test_every_pair_of_states_is_accepted_exactly_when_it_is_legal(tmp_path: Path) -> None:
    QueueStore.open(tmp_path / "q.db").close()
    conn = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    for n, (a, b) in enumerate(itertools.product(QUEUE_STATES, repeat=2)):
        conn.execute("INSERT INTO queue_tasks (idem_key, task, domain, spec, created_ts, updated_ts)"
                     " VALUES (?, 't', 'd', '', '', '')", (f"k{n}",))  # fmt: skip
        task_id = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        for step in path_to(a)[1:]:
            force(conn, task_id, step)
        assert is_legal(a, b) == ((a, b) in QUEUE_TRANSITIONS)
        if a == b:
            assert not is_legal(a, b)
            continue
        if (a, b) in LEGAL:
            force(conn, task_id, b)
        else:
            with pytest.raises(sqlite3.IntegrityError, match="illegal queue transition"):
                force(conn, task_id, b)
    assert all(path_to(s) for s in QUEUE_STATES)  # every state is reachable


def test_a_task_is_always_added_as_queued_and_the_log_is_append_only(queue: QueueStore, tmp_path: Path) -> None:
    queue.add([sub(1)])
    conn = sqlite3.connect(tmp_path / "q.db", isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO queue_tasks (idem_key, task, domain, spec, state, created_ts, updated_ts)"
                     " VALUES ('x', 't', 'd', '', 'running', '', '')")  # fmt: skip
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM queue_transitions")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE queue_transitions SET note = 'x'")


def test_the_store_refuses_an_illegal_change_before_the_database_does(queue: QueueStore) -> None:
    (added,) = queue.add([sub(1)])
    with pytest.raises(IllegalTransition):
        queue.finish(added.id, "h", "cancelled", "x", None, None)
    assert queue.finish(added.id, "h", "succeeded", "success", 100, "not running") is False


def test_adding_the_same_key_twice_adds_it_once(queue: QueueStore) -> None:
    first = queue.add([sub(1), sub(2)])
    again = queue.add([sub(1)])
    assert [a.added for a in first] == [True, True]
    assert again[0].added is False and again[0].id == first[0].id
    assert queue.counts()["queued"] == 2


def test_a_claim_leases_one_task_and_counts_an_attempt(queue: QueueStore, clock: Clock) -> None:
    queue.add([sub(1), sub(2)])
    claim = queue.claim("h1", 30.0, FIRST)
    assert claim is not None and (claim.id, claim.attempt, claim.lease_expires) == (1, 1, clock.t + 30)
    task = queue.get(1)
    assert task is not None and (task.state, task.lease_holder) == ("leased", "h1")
    assert queue.claim("h1", 30.0, lambda cands: None) is None
    assert [t.to_state for t in queue.transitions(1)] == ["queued", "leased"]


def test_candidates_are_one_per_group_with_its_oldest_task(queue: QueueStore) -> None:
    queue.add([sub(1), sub(2), sub(3, priority=90.0), sub(4, model="m")])
    seen = []
    queue.claim("h", 30.0, lambda cands: seen.extend(cands))
    assert sorted((c.id, c.priority, c.model, c.waiting) for c in seen) == [
        (1, None, None, 2), (3, 90.0, None, 1), (4, None, "m", 1)]


def test_concurrent_claims_never_hand_out_a_task_twice(tmp_path: Path) -> None:
    with QueueStore.open(tmp_path / "q.db") as q:
        q.add([sub(i) for i in range(120)])
    got: list[int] = []

    def worker(name: str) -> None:
        with QueueStore.open(tmp_path / "q.db") as q:
            while (claim := q.claim(name, 30.0, FIRST)) is not None:
                got.append(claim.id)

    threads = [threading.Thread(target=worker, args=(f"h{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 121))


def test_heartbeats_extend_only_the_holders_active_leases(queue: QueueStore, clock: Clock) -> None:
    queue.add([sub(1), sub(2)])
    a, b = queue.claim("h1", 10.0, FIRST), queue.claim("h2", 10.0, FIRST)
    clock.t += 5
    assert queue.heartbeat("h1", [a.id, b.id], 10.0) == {a.id}
    assert queue.get(a.id).lease_expires == clock.t + 10
    assert queue.get(b.id).lease_expires == clock.t + 5
    queue.cancel(a.id)
    assert queue.heartbeat("h1", [a.id], 10.0) == set()


def test_a_task_that_keeps_dying_goes_to_dead(queue: QueueStore) -> None:
    queue.add([sub(1, max_attempts=2)])
    for expected in ("queued", "dead"):
        claim = queue.claim("h", 10.0, FIRST)
        assert queue.start(claim.id, "h")
        assert queue.release(claim.id, "h", "crashed") == expected
    assert queue.claim("h", 10.0, FIRST) is None
    assert queue.get(1).attempts == 2


def test_a_stopped_runner_gets_its_attempt_back(queue: QueueStore) -> None:
    queue.add([sub(1, max_attempts=1)])
    claim = queue.claim("h", 10.0, FIRST)
    assert queue.release(claim.id, "h", "runner stopped", charge=False) == "queued"
    assert queue.get(1).attempts == 0
    assert queue.release(claim.id, "h", "again") is None  # no longer held


def test_take_over_returns_a_lapsed_task_or_adopts_its_result(queue: QueueStore, clock: Clock) -> None:
    queue.add([sub(1), sub(2, max_attempts=1), sub(3)])
    for _ in range(3):
        claim = queue.claim("dead", 10.0, FIRST)
        queue.start(claim.id, "dead")
    leases = {lease.id: lease for lease in queue.active_leases()}
    assert queue.take_over(leases[1], "expired") == "queued"
    assert queue.take_over(leases[2], "expired") == "dead"
    adopt = Adopted("succeeded", "success", 100.0, "done")
    assert queue.take_over(leases[3], "expired", adopt) == "succeeded"
    assert queue.get(3).outcome == "success" and "adopted" in queue.get(3).note
    assert queue.take_over(leases[1], "expired") is None  # already changed: nothing happens


def test_take_over_loses_to_a_heartbeat_that_came_first(queue: QueueStore, clock: Clock) -> None:
    queue.add([sub(1)])
    claim = queue.claim("h", 10.0, FIRST)
    (lease,) = queue.active_leases()
    clock.t += 1
    queue.heartbeat("h", [claim.id], 10.0)
    assert queue.take_over(lease, "expired") is None
    assert queue.get(claim.id).state == "leased"


def test_runs_of_ended_attempts_are_listed_until_closed(queue: QueueStore) -> None:
    queue.add([sub(1)])
    claim = queue.claim("h", 10.0, FIRST)
    queue.start(claim.id, "h")
    assert queue.attach_run(claim.id, "h", "run-1")
    assert queue.unfinished_runs() == []  # the current run of an active task
    assert not queue.attach_run(claim.id, "other", "run-x")
    queue.take_over(queue.active_leases()[0], "expired")
    assert queue.unfinished_runs() == ["run-1"]
    queue.close_run("run-1")
    assert queue.unfinished_runs() == [] and queue.runs_of(claim.id) == ["run-1"]


def test_finish_closes_the_attempts_run(queue: QueueStore) -> None:
    queue.add([sub(1)])
    claim = queue.claim("h", 10.0, FIRST)
    queue.start(claim.id, "h")
    queue.attach_run(claim.id, "h", "r")
    assert queue.finish(claim.id, "h", "succeeded", "success", 100.0, "ok")
    assert not queue.finish(claim.id, "h", "succeeded", "success", 100.0, "twice")
    assert queue.unfinished_runs() == [] and queue.get(claim.id).lease_holder is None


def test_cancel_and_retry(queue: QueueStore) -> None:
    queue.add([sub(1)])
    claim = queue.claim("h", 10.0, FIRST)
    queue.save_answer(1, "key", StoredAnswer("m", "text", 1, 2, None, None, 0.1))
    assert queue.cancel(claim.id).state == "cancelled"
    with pytest.raises(QueueCommandRefused, match="cancelled"):
        queue.cancel(claim.id)
    task = queue.retry(claim.id)
    assert (task.state, task.attempts, queue.answer_count(1)) == ("queued", 0, 0)
    with pytest.raises(QueueCommandRefused):
        queue.retry(claim.id)
    with pytest.raises(QueueTaskNotFound):
        queue.cancel(99)


def test_answers_are_kept_once_per_task_and_key(queue: QueueStore) -> None:
    queue.add([sub(1), sub(2)])
    first = StoredAnswer("m", "first", 1, 2, "stop", 0.01, 0.2)
    queue.save_answer(1, "k", first)
    queue.save_answer(1, "k", StoredAnswer("m", "second", 1, 2, None, None, 0.1))
    assert queue.answer(1, "k") == first
    assert queue.answer(2, "k") is None


def test_the_queue_lives_in_a_wal_database_synced_on_commit(queue: QueueStore) -> None:
    assert queue.durability() == {"journal_mode": "wal", "synchronous": 2}
    assert queue.integrity_check() == "ok"
