"""Load: many real queued tasks through the real runner (scripted fast model, real sandbox and SQLite)."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from pathlib import Path

import pytest

from kisystem.paths import SLOW_TESTS_ENV
from kisystem.store.learning import LearningStore
from kisystem.store.queue import LEGAL, QueueStore
from tests.queue.support import DeterministicModel, make_runner, submissions


async def run_load(tmp_path: Path, n: int, timeout_s: float) -> None:
    with LearningStore.open(tmp_path / "q.db") as learning, QueueStore.open(tmp_path / "q.db") as queue:
        queue.add(submissions(n))
        runner = make_runner(queue, learning, DeterministicModel(wrong_first=False), tmp_path / "ws",
                             workers=3, per_backend=2)  # fmt: skip
        summary = await asyncio.wait_for(runner.run(), timeout=timeout_s)  # a deadlock fails here
        assert summary.claimed == n and summary.states == {"succeeded": n}
        assert queue.counts()["succeeded"] == n
        runs = learning.recent_runs(limit=n + 10)
        assert len(runs) == n and Counter(r.outcome for r in runs) == {"success": n}
        steps = queue.transitions()
        assert len(steps) == 4 * n and all((s.from_state, s.to_state) in LEGAL for s in steps if s.from_state)
        assert queue.integrity_check() == "ok"


async def test_a_hundred_tasks_all_finish(tmp_path: Path) -> None:
    await run_load(tmp_path, 100, timeout_s=240)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get(SLOW_TESTS_ENV), reason="slow: set KISYSTEM_SLOW_TESTS=1")
@pytest.mark.timeout(1800)
async def test_a_thousand_tasks_all_finish(tmp_path: Path) -> None:
    await run_load(tmp_path, 1000, timeout_s=1500)
