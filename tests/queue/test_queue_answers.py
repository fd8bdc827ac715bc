"""CachingGenerator: a stored answer is returned instead of generating again; new ones are stored first."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kisystem.models.base import GenerationRequest
from kisystem.queue.answers import CACHED_STAT, CachingGenerator, request_key
from kisystem.store.queue import QueueStore, Submission
from tests.queue.support import DeterministicModel


@pytest.fixture
def queue(tmp_path: Path):
    with QueueStore.open(tmp_path / "q.db") as q:
        q.add([Submission("", "a", "Python/General", "ka"), Submission("", "b", "Python/General", "kb")])
        yield q


REQUEST = GenerationRequest(model="small", messages=[{"role": "user", "content": "Task add"}], max_tokens=50)


def test_the_key_covers_what_shapes_the_answer() -> None:
    base = request_key(REQUEST)
    assert request_key(replace(REQUEST)) == base
    changes = [{"model": "medium"}, {"mode": "completion"}, {"temperature": 0.8}, {"seed": 1}, {"stop": ["x"]},
               {"max_tokens": 51}, {"prompt": "p"}, {"messages": [{"role": "user", "content": "Task sub"}]}]
    assert len({request_key(replace(REQUEST, **c)) for c in changes} | {base}) == len(changes) + 1
    assert request_key(replace(REQUEST, num_ctx=4096, keep_alive="5m")) == base


async def test_a_stored_answer_is_replayed_not_generated(queue: QueueStore) -> None:
    model = DeterministicModel(wrong_first=False)
    first = await CachingGenerator(model, queue, 1).generate(REQUEST)
    assert queue.answer_count(1) == 1  # stored before it was returned
    replayer = CachingGenerator(model, queue, 1)  # e.g. in the process restarted after a crash
    streamed: list[str] = []
    again = await replayer.generate(replace(REQUEST), streamed.append)
    assert len(model.calls) == 1 and (replayer.replayed, replayer.generated) == (1, 0)
    assert again.text == first.text == streamed[0] and again.backend_stats == {CACHED_STAT: 1.0}
    assert (again.prompt_tokens, again.completion_tokens) == (first.prompt_tokens, first.completion_tokens)


async def test_answers_are_per_task(queue: QueueStore) -> None:
    model = DeterministicModel(wrong_first=False)
    await CachingGenerator(model, queue, 1).generate(REQUEST)
    await CachingGenerator(model, queue, 2).generate(REQUEST)
    assert len(model.calls) == 2


async def test_a_failed_generation_stores_nothing(queue: QueueStore) -> None:
    model = DeterministicModel(fail=RuntimeError("backend down"))
    with pytest.raises(RuntimeError):
        await CachingGenerator(model, queue, 1).generate(REQUEST)
    assert queue.answer_count() == 0


async def test_the_stream_hook_fires_once_on_the_first_chunk_of_a_fresh_answer(queue: QueueStore) -> None:
    fired: list[int] = []
    cache = CachingGenerator(DeterministicModel(wrong_first=False), queue, 1, lambda: fired.append(1))
    await cache.generate(REQUEST)
    await cache.generate(REQUEST)  # replayed: nothing streams from a model
    assert fired == [1]
