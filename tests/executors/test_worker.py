"""The executor seam and the worker's side of a remote attempt, without a Ray cluster."""

from __future__ import annotations

import functools
import pickle
import sys
from pathlib import Path

import pytest

from kisystem.config import OptimizationConfig
from kisystem.errors import ModelNotFound
from kisystem.executors import (
    AttemptJob,
    ExecutorError,
    LocalExecutor,
    RayMissing,
    require_ray,
)
from kisystem.executors.worker import PortableError, Replaying, WorkerKit, run_job
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.supervisor import Supervisor
from kisystem.models.base import Generation, GenerationRequest
from kisystem.models.inventory import InventoryError
from kisystem.queue.answers import request_key
from kisystem.store.learning import LearningStore
from tests.executors.support import NodeModels
from tests.queue.support import GOOD, INVENTORY, DeterministicModel, add_task

TIMING_KEYS = {"seconds", "peak_mb", "cpu_percent"}


def supervisor(tmp_path: Path, model, store=None, executor=None) -> Supervisor:
    cfg = OptimizationConfig()
    return Supervisor(cfg, INVENTORY, model, store, AttemptRunner(PhaseRunner(cfg), tmp_path / "ws"),
                      executor=executor)


def untimed(events: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    return [(kind, {k: v for k, v in data.items() if k not in TIMING_KEYS}) for kind, data in events]


class Recording:
    """An executor that notes each job and runs it here."""

    name = "recording"

    def __init__(self) -> None:
        self.jobs: list[AttemptJob] = []

    async def attempt(self, sup, job, emit):
        self.jobs.append(job)
        return await sup.attempt_here(job, emit)


def test_the_default_executor_is_local(tmp_path: Path) -> None:
    assert isinstance(supervisor(tmp_path, DeterministicModel()).executor, LocalExecutor)


async def test_every_attempt_of_a_run_goes_through_the_executor(tmp_path: Path) -> None:
    executor = Recording()
    with LearningStore.open(tmp_path / "l.db") as store:
        result = await supervisor(tmp_path, DeterministicModel(), store, executor).run_task(add_task(1))
    assert result.outcome == "success" and result.iterations == 2
    assert [(j.iteration, j.model, j.feedback is None) for j in executor.jobs] == [(1, "small", True), (2, "small", True)]
    assert executor.jobs[1].tries_on_model == 1  # the wrong answer is resampled on the same model


async def test_a_worker_emits_what_the_local_executor_emits(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, DeterministicModel(wrong_first=False))
    job = AttemptJob(add_task(1), "run1", 1, "small", None, 0)
    local: list[tuple[str, dict]] = []
    async with sup.attempts.task_run(job.task, job.run_id):
        here = await sup.attempt_here(job, lambda kind, **data: local.append((kind, data)))
    kit = WorkerKit.mirror(sup, NodeModels(wrong_first=False), tmp_path / "node")
    outcome = await run_job(pickle.loads(pickle.dumps(kit)), job, {})
    assert outcome.error is None and outcome.attempt.score == here.score == 100
    assert untimed(outcome.events) == untimed(local)
    assert [kind for kind, _ in outcome.events][:3] == ["generate", "answer", "code"]
    assert len(outcome.answers) == 1 and outcome.answers[0][1].text.startswith(GOOD)
    assert not any((tmp_path / "node" / "ray").iterdir())  # a solved attempt's directory is removed


async def test_a_stored_answer_is_replayed_not_asked_again(tmp_path: Path) -> None:
    model = DeterministicModel()
    request = GenerationRequest(model="small", messages=[{"role": "user", "content": "add"}])
    stored = Generation(text="stored", model="small")
    replaying = Replaying(model, {request_key(request): stored})
    assert (await replaying.generate(request)).text == "stored"
    assert model.calls == [] and replaying.fresh == []
    other = GenerationRequest(model="small", messages=[{"role": "user", "content": "sub"}])
    fresh = await replaying.generate(other)
    assert len(model.calls) == 1 and replaying.fresh == [(request_key(other), fresh)]


async def test_a_worker_returns_its_errors_for_the_coordinator(tmp_path: Path) -> None:
    sup = supervisor(tmp_path, DeterministicModel())
    broken = WorkerKit.mirror(sup, functools.partial(DeterministicModel, fail=RuntimeError("boom")), tmp_path / "n")
    outcome = await run_job(broken, AttemptJob(add_task(1), "run1", 1, "small", None, 0), {})
    assert outcome.attempt is None and [kind for kind, _ in outcome.events] == ["generate"]
    with pytest.raises(ExecutorError, match="^the attempt failed on node-x: RuntimeError: boom$"):
        raise outcome.error.restore("node-x")
    kit = WorkerKit.mirror(sup, NodeModels(), tmp_path / "n")
    unknown = await run_job(kit, AttemptJob(add_task(1), "run2", 1, "no-such-model", None, 0), {})
    with pytest.raises(InventoryError, match="unknown model 'no-such-model'"):  # kisystem's own: the same class
        raise unknown.error.restore("node-x")


def test_kisystem_errors_cross_processes_as_their_own_class() -> None:
    err = pickle.loads(pickle.dumps(PortableError.of(ModelNotFound("m", "e", "gone")))).restore("n")
    assert type(err) is ModelNotFound and err.model == "m" and str(err) == "model 'm' not found at e (gone)"
    other = PortableError.of(TypeError("bad")).restore("node-1")
    assert isinstance(other, ExecutorError) and str(other) == "the attempt failed on node-1: TypeError: bad"


def test_without_ray_the_error_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(RayMissing, match=r"pip install 'kisystem\[ray\]'"):
        require_ray()
