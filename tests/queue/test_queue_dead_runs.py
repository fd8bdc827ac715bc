"""A task whose last attempt died ends `dead`, and that attempt's run is still recorded `interrupted`."""

from __future__ import annotations

from pathlib import Path

from kisystem.queue.ordering import Ordering
from kisystem.store.learning import LearningStore
from kisystem.store.queue import QueueStore
from tests.queue.support import DeterministicModel, make_runner, submissions


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def test_the_run_of_a_task_that_died_on_its_last_attempt_is_interrupted(tmp_path: Path) -> None:
    clock = Clock()
    with LearningStore.open(tmp_path / "q.db") as learning, QueueStore.open(tmp_path / "q.db", clock=clock) as queue:
        queue.add(submissions(1, max_attempts=1))
        holder = "elsewhere:1:gone"  # another host: only its lease's expiry says it is gone
        claim = queue.claim(holder, 10.0, Ordering().pick)
        queue.start(claim.id, holder)
        queue.attach_run(claim.id, holder, "run-last")
        learning.start_run("add-0", "Python/General", "small", run_id="run-last")
        runner = make_runner(queue, learning, DeterministicModel(wrong_first=False), tmp_path / "ws")
        clock.t += 11

        assert runner.recover() == 1

        assert queue.get(claim.id).state == "dead"
        run = learning.get_run("run-last")
        assert run is not None and run.outcome == "interrupted"
        assert queue.unfinished_runs() == []
