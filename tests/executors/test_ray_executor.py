"""The Ray executor on a real two-node cluster: placement by model slots, the queue on Ray, a killed worker.

The head node serves ``small`` (2 slots), the second node ``large``; ``medium`` is served
nowhere.  Scripted models run on the workers; each answer names the node it ran on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from kisystem.executors.ray_executor import RayExecutor, RaySettings
from kisystem.queue.runner import submission_for
from kisystem.sandbox import SandboxLevel
from kisystem.store.learning import LearningStore
from kisystem.store.queue import LEGAL, QueueStore
from tests.executors.conftest import SECOND_MODELS
from tests.executors.support import NodeModels, declaring_nodes, events, runner_on
from tests.queue.support import DeterministicModel, add_task

pytestmark = pytest.mark.timeout(240)


@pytest.fixture
def stores(tmp_path: Path):
    with LearningStore.open(tmp_path / "q.db") as learning, QueueStore.open(tmp_path / "q.db") as queue:
        yield queue, learning


def executor(tmp_path: Path, models: NodeModels, **settings) -> RayExecutor:
    return RayExecutor(models, workspaces=tmp_path / "nodes", settings=RaySettings(poll_s=0.05, **settings))


def answer_marks(queue: QueueStore) -> list[tuple[str, str]]:
    """(model, the node its answer says it ran on) for every stored answer."""
    rows = queue._rows("SELECT model, text FROM queue_answers")
    return [(r["model"], r["text"].rsplit("# node: ", 1)[1].strip()) for r in rows]


def assert_nothing_lost_or_doubled(queue: QueueStore, learning: LearningStore, tasks: int) -> None:
    assert [t.state for t in queue.tasks()] == ["succeeded"] * tasks
    for task in queue.tasks():
        steps = queue.transitions(task.id)
        assert all((a.from_state, a.to_state) in LEGAL for a in steps[1:])
        assert sum(s.to_state == "succeeded" for s in steps) == 1
    runs = learning.recent_runs(limit=100)
    assert sorted(r.run_id for r in runs) == sorted(i for t in queue.tasks() for i in queue.runs_of(t.id))
    assert Counter(r.task for r in runs if r.outcome == "success") == Counter(t.task for t in queue.tasks())


async def test_attempts_run_only_on_the_node_declaring_their_model(ray_cluster, tmp_path: Path, stores) -> None:
    queue, learning = stores
    queue.add([submission_for(add_task(i), key_space="p") for i in range(2)] +
              [submission_for(add_task(i), key_space="p", model="large") for i in range(2, 4)])
    runner = runner_on(queue, learning, DeterministicModel(), tmp_path / "ws", executor(tmp_path, NodeModels()))
    summary = await runner.run()
    assert summary.states == Counter({"succeeded": 4}) and summary.generated == 8  # wrong, then right
    assert_nothing_lost_or_doubled(queue, learning, 4)
    declared = declaring_nodes()
    placed = [(e["model"], e["node"]) for e in events(learning, "node")]
    assert Counter(model for model, _ in placed) == Counter({"small": 4, "large": 4})
    assert all(node == declared[model] for model, node in placed), (placed, declared)
    assert sorted(answer_marks(queue)) == sorted([("small", "head")] * 4 + [("large", "second")] * 4)
    assert {e["sandbox"] for e in events(learning, "node")} <= {str(level) for level in SandboxLevel}


async def test_a_model_no_node_serves_is_skipped_with_a_clear_reason(ray_cluster, tmp_path: Path, stores) -> None:
    queue, learning = stores
    queue.add([submission_for(add_task(9), key_space="u", model="medium")])
    started = time.monotonic()
    await runner_on(queue, learning, DeterministicModel(), tmp_path / "ws", executor(tmp_path, NodeModels())).run()
    assert time.monotonic() - started < 60
    [skip] = events(learning, "skip")
    assert skip["model"] == "medium" and "no live node serves it" in skip["reason"]
    [run] = learning.recent_runs(10)
    assert run.outcome == "success" and run.model == "large"  # routed on along the chain, to the second node


async def test_a_killed_worker_loses_its_attempt_and_the_queue_runs_it_again(ray_cluster, tmp_path: Path,
                                                                             stores) -> None:
    queue, learning = stores
    queue.add([submission_for(add_task(0), key_space="k")])
    log, pid_file = tmp_path / "generations.log", tmp_path / "worker.pid"
    runner = runner_on(queue, learning, DeterministicModel(), tmp_path / "ws",
                       executor(tmp_path, NodeModels(log=log, hang=pid_file)), workers=1)
    run = asyncio.create_task(runner.run())
    pid = await _pid_in(pid_file, run)
    os.kill(pid, signal.SIGKILL)  # the Ray worker, mid-generation of the task's second attempt
    summary = await asyncio.wait_for(run, 120)
    assert_nothing_lost_or_doubled(queue, learning, 1)
    [task] = queue.tasks()
    assert task.attempts == 2
    runs = {r.run_id: r for r in learning.recent_runs(10)}
    first, second = (runs[i] for i in queue.runs_of(task.id))
    assert first.outcome == "error" and "lost on the Ray cluster" in first.reason and second.outcome == "success"
    generated = Counter(log.read_text().split())
    assert sorted(generated.values()) == [1, 2]  # the first answer was reused; the killed one asked again
    assert summary.replayed == 1 and queue.answer_count() == 2


async def test_a_killed_node_loses_its_attempt_and_a_node_serving_the_model_again_runs_it(
        ray_cluster, tmp_path: Path, stores) -> None:  # fmt: skip
    queue, learning = stores
    queue.add([submission_for(add_task(0), key_space="n", model="large")])
    log, pid_file = tmp_path / "generations.log", tmp_path / "worker.pid"
    runner = runner_on(queue, learning, DeterministicModel(), tmp_path / "ws",
                       executor(tmp_path, NodeModels(log=log, hang=pid_file)), workers=1)
    run = asyncio.create_task(runner.run())
    await _pid_in(pid_file, run)  # the second attempt hangs on the second node
    [raylet] = ray_cluster.processes("second", "raylet")
    os.kill(raylet, signal.SIGKILL)
    await asyncio.to_thread(ray_cluster.start_second, SECOND_MODELS, 1)  # its replacement, serving "large" too
    summary = await asyncio.wait_for(run, 150)
    assert_nothing_lost_or_doubled(queue, learning, 1)
    [task] = queue.tasks()
    runs = [r for r in learning.recent_runs(10)]
    by_id = {r.run_id: r for r in runs}
    first, second = (by_id[i] for i in queue.runs_of(task.id))
    assert first.outcome == "error" and "lost on the Ray cluster" in first.reason and second.outcome == "success"
    assert sorted(Counter(log.read_text().split()).values()) == [1, 2] and summary.replayed == 1
    last = [e["node"] for e in events(learning, "node")][-1]
    assert last == declaring_nodes()["large"] and ray_cluster.processes("second", "raylet") != [raylet]


async def _pid_in(path: Path, run: asyncio.Task, timeout_s: float = 90.0) -> int:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if run.done():
            run.result()
            raise AssertionError("the runner finished before the worker wrote its pid")
        assert time.monotonic() < deadline, "no worker wrote its pid"
        await asyncio.sleep(0.05)
    return int(path.read_text())
