"""Shared helpers of the ensemble's tests: a fleet of N scripted models, configs, and scripted judging
(never what a user runs)."""

from __future__ import annotations

import contextlib
from dataclasses import replace

from kisystem.config import EnsembleSettings, OptimizationConfig
from kisystem.loop.attempt import Attempt, AttemptRunner, Failure
from kisystem.loop.taskspec import PhaseSpec, TaskSpec
from kisystem.models.inventory import parse_inventory
from kisystem.sandbox import SandboxLevel


def fleet(n: int):
    names = [f"m{i}" for i in range(1, n + 1)]
    return parse_inventory({
        "endpoints": {name: {"backend": "openai", "base_url": f"http://127.0.0.1:9/{name}"} for name in names},
        "models": [{"name": name, "rank": i, "timeout_s": 30, "endpoint": name} for i, name in enumerate(names, 1)],
        "routes": {"Python/General": {"start": names[0], "escalation": names[1:]}},
    }, "test fleet")  # fmt: skip


def config(**ensemble) -> OptimizationConfig:
    return replace(OptimizationConfig(), ensemble=replace(EnsembleSettings(), **ensemble))


class _Phases:
    level = SandboxLevel.NONE


class ScriptedJudging(AttemptRunner):
    """Scores an answer by what it says: RIGHT passes (100), HALF passes half the tests (50), else 0."""

    def __init__(self, root) -> None:
        super().__init__(_Phases(), root)  # type: ignore[arg-type]
        self.judged: list[tuple[int, str, str]] = []
        self.retired: list[tuple[str, bool]] = []
        self.open_runs: list[str] = []

    @contextlib.asynccontextmanager
    async def task_run(self, task, run_id):
        self.open_runs.append(run_id)
        yield None

    def retire(self, run_id, *, solved):
        self.retired.append((run_id, solved))

    async def run(self, task, run_id, iteration, model, mode, request, generation, emit):
        score = 100.0 if "RIGHT" in generation.text else 50.0 if "HALF" in generation.text else 0.0
        failure = None if score == 100.0 else Failure("LOGIC", "TEST", 2, True, "wrong answer", "x", "test:logic")
        self.judged.append((iteration, model, generation.text))
        emit("score", score=score)
        return Attempt(model, score, code=generation.text, failure=failure, t_generate=generation.total_s, t_test=0.5)


TASK = TaskSpec(id="t.add", domain="Python/General", language="python", prompt="Write add(a, b).",
                solution_file="solution.py", test=PhaseSpec("python test.py", 10.0))
