"""The crash harness: SIGKILL the real runner at each step of a task, restart it, check nothing broke."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from kisystem.queue.runner import KILL_ENV, KILL_POINTS
from kisystem.store.learning import LearningStore
from kisystem.store.queue import LEGAL, QueueStore
from tests.queue.support import submissions

ROOT = Path(__file__).parents[2]
TASKS = 3
REPLAYS_AFTER = ("after_build", "after_test", "before_record")  # an answer was stored, then the attempt died


def run_entry(tmp_path: Path, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != KILL_ENV}
    if kill_at:
        env[KILL_ENV] = kill_at
    cmd = [sys.executable, "-m", "tests.queue.crash_entry", str(tmp_path / "q.db"), str(tmp_path / "ws"),
           str(tmp_path / "generations.log")]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_a_kill_at_any_step_loses_nothing_and_repeats_nothing(tmp_path: Path, point: str) -> None:
    with QueueStore.open(tmp_path / "q.db") as queue:
        queue.add(submissions(TASKS))
    killed = run_entry(tmp_path, point)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    restarted = run_entry(tmp_path)
    assert restarted.returncode == 0, restarted.stderr
    summary = json.loads(restarted.stdout.strip().splitlines()[-1])
    with QueueStore.open(tmp_path / "q.db") as queue, LearningStore.open(tmp_path / "q.db") as learning:
        assert_nothing_lost_or_repeated(queue)
        assert_one_record_per_exit(queue, learning)
        assert_answers_reused(tmp_path / "generations.log", queue, point, summary)


def assert_nothing_lost_or_repeated(queue: QueueStore) -> None:
    tasks = queue.tasks()
    assert len(tasks) == TASKS and {t.state for t in tasks} == {"succeeded"}
    for task in tasks:
        steps = queue.transitions(task.id)
        assert steps[0].from_state is None and steps[0].to_state == "queued"
        for before, after in zip(steps, steps[1:], strict=False):
            assert after.from_state == before.to_state
            assert (after.from_state, after.to_state) in LEGAL
        assert sum(s.to_state == "succeeded" for s in steps) == 1
    assert queue.integrity_check() == "ok"


def assert_one_record_per_exit(queue: QueueStore, learning: LearningStore) -> None:
    runs = learning.recent_runs(limit=1000)
    assert all(r.outcome != "running" for r in runs)
    attempts = [run_id for t in queue.tasks() for run_id in queue.runs_of(t.id)]
    assert sorted(attempts) == sorted(r.run_id for r in runs)  # one record per attempt, none outside the queue
    per_task = Counter(r.task for r in runs if r.outcome == "success")
    assert per_task == Counter({f"add-{i}": 1 for i in range(TASKS)})
    assert all(r.outcome in ("success", "interrupted") for r in runs)


def assert_answers_reused(log: Path, queue: QueueStore, point: str, summary: dict) -> None:
    generated = Counter(log.read_text().split())
    stored = queue.answer_count()
    in_flight = 1 if point == "during_generation" else 0  # killed before its answer was stored
    assert sum(generated.values()) == stored + in_flight
    assert sum(n > 1 for n in generated.values()) == in_flight
    if point in REPLAYS_AFTER:
        assert summary["replayed"] >= 1
