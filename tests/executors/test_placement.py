"""Placement and slot rules of the Ray executor against a fake cluster view (no Ray processes)."""

from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import replace

import pytest

from kisystem.errors import BackendUnreachable, ModelNotFound
from kisystem.executors import AttemptJob, ExecutorError
from kisystem.executors.ray_executor import RayExecutor, RaySettings, placement, served_models, task_name
from tests.queue.support import add_task


class FakeRay:
    def __init__(self, *nodes: dict) -> None:
        self.node_list = list(nodes)

    def nodes(self) -> list[dict]:
        return self.node_list

    def is_initialized(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def node(name: str, alive: bool = True, **resources: float) -> dict:
    return {"NodeID": name, "Alive": alive, "NodeManagerAddress": f"10.0.0.{len(name)}",
            "Resources": {"CPU": 4.0, **{k.replace("__", ":"): v for k, v in resources.items()}}}  # fmt: skip


def job(model: str, language: str = "python") -> AttemptJob:
    return AttemptJob(replace(add_task(1), language=language), "run", 2, model, None, 0)


def executor(*nodes: dict, clock: Clock | None = None) -> RayExecutor:
    return RayExecutor(ray=FakeRay(*nodes), clock=clock or Clock(), settings=RaySettings(poll_s=0.01,
                                                                                       down_grace_s=60))


def test_an_attempt_asks_for_one_slot_of_its_model_and_a_gpu_only_for_cuda() -> None:
    assert placement(add_task(1), "qwen2.5-coder:32b", 1.0) == {
        "resources": {"model:qwen2.5-coder:32b": 1}, "num_cpus": 1.0, "num_gpus": 0}
    assert placement(replace(add_task(1), language="cuda"), "m", 0.5)["num_gpus"] == 1.0
    assert task_name(job("large")) == "kisystem:add-1:it2:large"
    assert served_models({"CPU": 8, "model:a:7b": 2, "GPU": 1}) == {"a:7b": 2}


def test_slots_are_summed_over_the_live_nodes_serving_the_model() -> None:
    ray = executor(node("a", model__large=2), node("b", model__large=1, model__small=1), node("c", model__small=4))
    assert ray._slots(job("large")) == 3 and ray._slots(job("small")) == 5


def test_a_model_no_live_node_serves_is_refused_at_once() -> None:
    with pytest.raises(ModelNotFound, match="no live node serves it; start one with `kisystem ray node --serves x`"):
        executor(node("a", model__large=1))._slots(job("x"))
    with pytest.raises(ModelNotFound, match="with a GPU"):  # served, but not where a CUDA task can run
        executor(node("a", model__large=1))._slots(job("large", "cuda"))
    assert executor(node("a", model__large=1, GPU=1))._slots(job("large", "cuda")) == 1


def test_a_node_that_went_down_is_waited_for_then_given_up() -> None:
    clock = Clock()
    ray = executor(node("a", alive=False, model__large=1), clock=clock)
    assert ray._slots(job("large")) == 0  # wait: it may come back
    clock.t += 59
    assert ray._slots(job("large")) == 0
    clock.t += 2
    with pytest.raises(BackendUnreachable, match=r"the Ray node serving large \(10.0.0.1\) has been down for over 60 s"):
        ray._slots(job("large"))


async def test_no_more_attempts_run_at_once_than_the_model_has_slots() -> None:
    clock = Clock()
    ray = executor(node("a", model__large=1), clock=clock)
    notices: list[tuple[str, dict]] = []
    emit = lambda kind, **data: notices.append((kind, data))  # noqa: E731
    entered: list[int] = []

    async def attempt(i: int, hold: asyncio.Event) -> None:
        async with ray._slot(job("large"), emit):
            entered.append(i)
            await hold.wait()

    first, second = asyncio.Event(), asyncio.Event()
    one = asyncio.create_task(attempt(1, first))
    two = asyncio.create_task(attempt(2, second))
    await asyncio.sleep(0.1)
    assert entered == [1]
    clock.t += 16
    await asyncio.sleep(0.05)
    assert notices and notices[0][0] == "waiting" and notices[0][1]["reason"] == "every Ray slot of large is busy"
    assert notices[0][1]["persist"] is False
    first.set()
    await asyncio.sleep(0.1)
    assert entered == [1, 2]
    second.set()
    await asyncio.gather(one, two)
    assert ray._inflight["large"] == 0


class PendingRef:
    """A submitted task that never finishes (its node died before it started)."""

    def __init__(self) -> None:
        self.pending: concurrent.futures.Future = concurrent.futures.Future()

    def future(self) -> concurrent.futures.Future:
        return self.pending


async def test_a_pending_attempt_gives_up_when_its_model_has_no_node_left() -> None:
    ray = executor(node("a", model__large=1))
    ray.settings = RaySettings(watch_s=0.01)
    watched = asyncio.create_task(ray._watched(PendingRef(), job("large"), budget=60))
    await asyncio.sleep(0.05)
    assert not watched.done()  # its node lives: it waits
    ray.ray.node_list = []
    with pytest.raises(ModelNotFound, match="no live node serves it"):
        await asyncio.wait_for(watched, 1)


async def test_an_attempt_past_its_budget_is_given_up() -> None:
    ray = executor(node("a", model__large=1))
    ray.settings = RaySettings(watch_s=0.01)
    with pytest.raises(ExecutorError, match="attempt 2 of add-1 on large did not finish within 0 s"):
        await asyncio.wait_for(ray._watched(PendingRef(), job("large"), budget=0.05), 1)
