"""Scripted models that a Ray worker can build (picklable factories), and a runner on an executor."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path

from kisystem.config import OptimizationConfig
from kisystem.executors.local_cluster import NODE_ENV  # set on each test node's `ray start`
from kisystem.executors.ray_executor import model_resource
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.supervisor import Supervisor
from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.queue.ordering import Ordering
from kisystem.queue.runner import QueueRunner, RunnerSettings, derive_supervisor
from kisystem.store.learning import LearningStore
from kisystem.store.queue import QueueStore
from tests.queue.support import INVENTORY, DeterministicModel


@dataclass(frozen=True)
class NodeModels:
    """A picklable model factory: on the worker, the queue tests' deterministic model.

    ``hang``: the first generation of a *retry* (the second prompt of a task) writes the
    worker's pid to this file and sleeps, so a test can SIGKILL that worker mid-attempt;
    once the file exists, every generation answers at once.
    """

    log: Path | None = None
    wrong_first: bool = True
    hang: Path | None = None

    def __call__(self) -> MarkedModel:
        return MarkedModel(self.log, wrong_first=self.wrong_first, hang=self.hang)


class MarkedModel(DeterministicModel):
    """The deterministic model, whose answer text names the node it ran on (``NODE_ENV``)."""

    def __init__(self, log: Path | None, *, wrong_first: bool, hang: Path | None) -> None:
        super().__init__(log, wrong_first=wrong_first)
        self.hang = hang

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        generation = await super().generate(request, on_text)  # logged: asked, whatever happens next
        if self.hang is not None and request.temperature > 0 and not self.hang.exists():
            partial = self.hang.with_suffix(".tmp")
            partial.write_text(str(os.getpid()))
            partial.rename(self.hang)  # whole, or not there: the test reads a complete pid
            await asyncio.sleep(120)
        generation.text += f"\n# node: {os.environ.get(NODE_ENV, 'local')}\n"
        return generation


def runner_on(queue: QueueStore, learning: LearningStore, model, workspaces: Path, executor, *,
              config: OptimizationConfig | None = None, **settings) -> QueueRunner:  # fmt: skip
    """The queue tests' runner, with its supervisor's attempts on ``executor``."""
    cfg = config or OptimizationConfig()
    base = Supervisor(cfg, INVENTORY, model, learning, AttemptRunner(PhaseRunner(cfg), workspaces), executor=executor)
    defaults = {"workers": 2, "lease_s": 30.0, "poll_s": 0.02}
    return QueueRunner(queue, learning, derive_supervisor(base), model, lambda: Ordering(),
                       settings=RunnerSettings(**{**defaults, **settings}), inventory=INVENTORY)


def declaring_nodes() -> dict[str, str]:
    """model -> the id of the node that declared it, from the cluster's own view."""
    import ray

    return {model: n["NodeID"] for n in ray.nodes() if n["Alive"]
            for model in ("small", "medium", "large") if n["Resources"].get(model_resource(model))}  # fmt: skip


def events(learning: LearningStore, kind: str) -> list[dict]:
    rows = learning.query("SELECT payload FROM run_events WHERE kind = ? ORDER BY id", (kind,))
    return [json.loads(r[0]) for r in rows]
