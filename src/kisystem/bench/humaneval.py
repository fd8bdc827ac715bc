"""`bench humaneval`: single-shot per embedded model against the full loop, same tasks.

Each arm runs the real supervisor over the same HumanEval problems in one process: a
single-shot arm is the loop restricted to one model with a budget of one iteration
(greedy, one attempt); the loop arm is the configured loop with its routing and
stop-loss escalation.  Results go to a separate benchmark database, so benchmark runs do
not skew the learning database.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

from kisystem.config import OptimizationConfig
from kisystem.loop.humaneval import humaneval_spec, read_humaneval
from kisystem.loop.session import loop_session
from kisystem.loop.supervisor import TaskResult
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.inventory import Inventory
from kisystem.paths import Paths


@dataclass(frozen=True)
class Arm:
    name: str
    config: OptimizationConfig
    only_model: str | None  # single-shot arms pin one model


@dataclass(frozen=True)
class ArmResult:
    arm: str
    solved: int
    attempted: int
    attempts: int
    tokens: int
    wall_s: float
    model_s: float
    solved_ids: tuple[str, ...]

    @property
    def solved_per_model_minute(self) -> float:
        return self.solved / (self.model_s / 60) if self.model_s else 0.0


def humaneval_tasks(start: int, stop: int) -> list[TaskSpec]:
    return [humaneval_spec(p) for p in read_humaneval()[start:stop]]


def arms(config: OptimizationConfig, inventory: Inventory) -> list[Arm]:
    single = replace(config, max_optimization_iterations=1)
    models = sorted(inventory.models.values(), key=lambda m: m.rank)
    return [*(Arm(f"single-shot {m.name}", single, m.name) for m in models), Arm("loop", config, None)]


async def run_arm(arm: Arm, tasks: list[TaskSpec], inventory: Inventory, paths: Paths, db: Path,
                  progress: Callable[[str, TaskResult], None]) -> ArmResult:
    started = time.monotonic()
    results: list[TaskResult] = []
    async with loop_session(arm.config, inventory, paths, db=db) as sup:
        if arm.only_model:
            sup.available = {arm.only_model} & (sup.available or set())
        for task in tasks:
            result = await sup.run_task(task, start_model=arm.only_model)
            results.append(result)
            progress(arm.name, result)
    return ArmResult(arm.name, sum(r.solved for r in results), len(results), sum(r.iterations for r in results),
                     sum(r.tokens for r in results), time.monotonic() - started,
                     sum(sum(r.model_seconds.values()) for r in results),
                     tuple(r.task for r in results if r.solved))


def save(results: list[ArmResult], out: Path, meta: dict) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = [{**asdict(r), "solved_per_model_minute": r.solved_per_model_minute} for r in results]
    out.write_text(json.dumps({**meta, "arms": rows}, indent=2))
    return out

