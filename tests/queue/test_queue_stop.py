"""A stopped runner returns only once every worker has handed its task back and recorded its run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.store.learning import LearningStore
from kisystem.store.queue import QueueStore
from tests.queue.support import make_runner, submissions


class SlowToStop:
    """Generates forever; when cancelled, unwinds over a few loop turns, like an HTTP stream does."""

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            for _ in range(50):
                await asyncio.sleep(0)
            raise
        raise AssertionError("never reached")


async def test_a_cancelled_runner_returns_after_its_busy_worker_released_the_task(tmp_path: Path) -> None:
    with LearningStore.open(tmp_path / "q.db") as learning, QueueStore.open(tmp_path / "q.db") as queue:
        queue.add(submissions(1))
        runner = make_runner(queue, learning, SlowToStop(), tmp_path / "ws", workers=2)
        run = asyncio.create_task(runner.run())
        while queue.get(1).run_id is None:
            await asyncio.sleep(0.01)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        # Checked at once: the caller closes its stores as soon as run() returns.
        assert queue.get(1).state == "queued"
        assert [r.outcome for r in learning.recent_runs()] == ["interrupted"]
