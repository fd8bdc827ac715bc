"""The runner in-process: cost-aware claims, cancel, dead tasks, recovery, adoption, caps, clean stop."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from kisystem.queue.ordering import Ordering
from kisystem.queue.runner import QueueEvent, derive_supervisor, holder_is_dead, submission_for
from kisystem.store.learning import LearningStore, RunResult
from kisystem.store.queue import QueueStore, Submission
from tests.queue.support import DeterministicModel, add_task, make_runner, submissions


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def stores(tmp_path: Path):
    with LearningStore.open(tmp_path / "q.db") as learning, QueueStore.open(tmp_path / "q.db") as queue:
        yield queue, learning


def outcomes(learning: LearningStore) -> list[str]:
    return sorted(r.outcome for r in learning.recent_runs(100))


async def test_tasks_are_claimed_in_priority_eff_order(tmp_path: Path, stores) -> None:
    queue, learning = stores
    priorities = [10.0, 90.0, 50.0, 70.0]
    queue.add([submission_for(add_task(i, priority=p), key_space="o") for i, p in enumerate(priorities)])
    runner = make_runner(queue, learning, DeterministicModel(wrong_first=False), tmp_path / "ws", workers=1)
    order: list[str] = []
    runner._on_event = lambda e: order.append(e.task) if e.state == "leased" else None
    await runner.run()
    assert order == ["add-1", "add-3", "add-2", "add-0"]


async def test_the_same_task_added_twice_runs_once(tmp_path: Path, stores) -> None:
    queue, learning = stores
    queue.add(submissions(1))
    queue.add(submissions(1))
    summary = await make_runner(queue, learning, DeterministicModel(wrong_first=False), tmp_path / "ws").run()
    assert summary.claimed == 1 and outcomes(learning) == ["success"]


async def test_a_cancelled_running_task_stops_at_the_next_heartbeat(tmp_path: Path, stores) -> None:
    queue, learning = stores
    queue.add(submissions(1))
    runner = make_runner(queue, learning, DeterministicModel(delay_s=30.0), tmp_path / "ws", lease_s=0.3)
    states: list[str] = []
    runner._on_event = lambda e: states.append(e.state)

    async def cancel_when_running() -> None:
        while queue.get(1).state != "running" or queue.get(1).run_id is None:
            await asyncio.sleep(0.01)
        with QueueStore.open(tmp_path / "q.db") as other:  # as `kisystem queue cancel` would
            other.cancel(1)

    await asyncio.wait_for(asyncio.gather(runner.run(), cancel_when_running()), timeout=20)
    assert queue.get(1).state == "cancelled" and states[-1] == "lost"
    assert outcomes(learning) == ["interrupted"]
    assert queue.unfinished_runs() == []


async def test_a_task_whose_loop_keeps_crashing_ends_dead(tmp_path: Path, stores) -> None:
    queue, learning = stores
    queue.add(submissions(1, max_attempts=2))
    summary = await make_runner(queue, learning, DeterministicModel(fail=RuntimeError("boom")), tmp_path / "ws").run()
    assert queue.get(1).state == "dead" and queue.get(1).attempts == 2
    assert summary.states == {"queued": 1, "dead": 1}
    assert outcomes(learning) == ["error", "error"]


def _abandoned(tmp_path: Path, clock: Clock, learning: LearningStore, finish: bool) -> QueueStore:
    """A task claimed and started by a holder on another host, whose run is still 'running' (or finished)."""
    queue = QueueStore.open(tmp_path / "q.db", clock=clock)
    queue.add(submissions(1))
    holder = "elsewhere:1:gone"
    claim = queue.claim(holder, 10.0, Ordering().pick)
    queue.start(claim.id, holder)
    queue.attach_run(claim.id, holder, "run-abandoned")
    learning.start_run("add-0", "Python/General", "small", run_id="run-abandoned")
    if finish:
        learning.finish_run("run-abandoned", RunResult("small", 1, 100.0, "success", reason="done"))
    return queue


async def test_a_lapsed_lease_returns_to_the_queue_and_its_run_is_interrupted(tmp_path: Path, stores) -> None:
    _, learning = stores
    clock = Clock()
    queue = _abandoned(tmp_path, clock, learning, finish=False)
    runner = make_runner(queue, learning, DeterministicModel(wrong_first=False), tmp_path / "ws")
    assert runner.recover() == 0  # the lease has not lapsed yet
    clock.t += 11
    assert runner.recover() == 1
    assert queue.get(1).state == "queued" and learning.get_run("run-abandoned").outcome == "interrupted"
    await runner.run()
    assert queue.get(1).state == "succeeded" and outcomes(learning) == ["interrupted", "success"]
    queue.close()


async def test_a_run_that_finished_before_its_worker_died_is_adopted(tmp_path: Path, stores) -> None:
    _, learning = stores
    clock = Clock()
    queue = _abandoned(tmp_path, clock, learning, finish=True)
    clock.t += 11
    summary = await make_runner(queue, learning, DeterministicModel(), tmp_path / "ws").run()
    assert summary.claimed == 0 and queue.get(1).state == "succeeded" and queue.get(1).score == 100.0
    assert outcomes(learning) == ["success"]
    queue.close()


@pytest.mark.parametrize("cap", [1, 2])
async def test_generations_per_backend_stay_under_the_cap(tmp_path: Path, stores, cap: int) -> None:
    queue, learning = stores
    queue.add(submissions(4))
    runner = make_runner(queue, learning, DeterministicModel(wrong_first=False, delay_s=0.2), tmp_path / "ws",
                         workers=4, per_backend=cap)  # fmt: skip
    await runner.run()
    assert runner.gate.peak["e1"] == cap
    assert queue.counts()["succeeded"] == 4


async def test_stopping_the_runner_hands_the_task_back_without_charging_it(tmp_path: Path, stores) -> None:
    queue, learning = stores
    queue.add(submissions(1))
    runner = make_runner(queue, learning, DeterministicModel(delay_s=30.0), tmp_path / "ws")
    run = asyncio.create_task(runner.run())
    while queue.get(1).run_id is None:
        await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    task = queue.get(1)
    assert (task.state, task.attempts) == ("queued", 0)
    assert outcomes(learning) == ["interrupted"] and queue.unfinished_runs() == []


async def test_a_spec_the_runner_cannot_read_fails_with_its_reason(tmp_path: Path, stores) -> None:
    queue, learning = stores
    spec = submission_for(add_task(0)).spec.replace("Python/General", "Quantum/Stuff")
    queue.add([Submission(spec, "add-0", "Quantum/Stuff", "bad")])
    events: list[QueueEvent] = []
    runner = make_runner(queue, learning, DeterministicModel(), tmp_path / "ws")
    runner._on_event = events.append
    await runner.run()
    task = queue.get(1)
    assert task.state == "failed" and "queued task 1" in task.note and "Quantum/Stuff" in task.note


def test_per_task_supervisors_share_the_phase_runner(tmp_path: Path, stores) -> None:
    queue, learning = stores
    runner = make_runner(queue, learning, DeterministicModel(), tmp_path / "ws")
    a = runner.supervise(DeterministicModel(), learning, lambda e: None)
    b = runner.supervise(DeterministicModel(), learning, lambda e: None)
    assert a is not b and a.attempts.phases is b.attempts.phases
    assert derive_supervisor(a)(DeterministicModel(), learning, print).generator is not a.generator


def test_a_holder_is_dead_only_when_its_process_on_this_host_is_gone() -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    assert holder_is_dead(f"{host}:{proc.stdout.strip()}:x")
    assert not holder_is_dead(f"{host}:{__import__('os').getpid()}:x")
    assert not holder_is_dead(f"another-{host}:{proc.stdout.strip()}:x")
    assert not holder_is_dead(None) and not holder_is_dead("garbage")
