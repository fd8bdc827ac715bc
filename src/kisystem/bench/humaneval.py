"""`bench humaneval`: the loop against one shot and compute-matched resampling, same problems.

Per problem, in one process and one model fleet:

- ``single M``: one greedy answer of model M to the plain prompt (the loop's first try).
- ``loop``: the real supervisor with its routing, feedback and escalation.
- ``resample M``: model M sampled independently (greedy first, then seeded samples at
  ``sample_temperature``, never any feedback), as many samples as come nearest the
  model-seconds the loop spent on that problem; solved if any sample passes.
- ``resample ladder``: the same, spending on each model of the route what the loop
  spent on it, in the route's order.

Everything is judged by the task's judge.  Answers and judged attempts are cached (see
:mod:`kisystem.bench.cache`), so a run resumes, runs in pieces that merge, and reports
each arm's time as it was when the work was done.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kisystem.bench.cache import shared_cache
from kisystem.bench.sampling import judged_sample
from kisystem.config import OptimizationConfig
from kisystem.errors import UsageError
from kisystem.loop.attempt import Attempt
from kisystem.loop.humaneval import humaneval_spec, read_humaneval
from kisystem.loop.session import loop_session
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.inventory import Inventory
from kisystem.paths import Paths

LOOP = "loop"
LADDER = "ladder"
MAX_SAMPLES = 40  # per model and problem: a backend that fails fast must not sample forever


@dataclass
class Outcome:
    """One arm on one problem."""

    solved: bool = False
    attempts: int = 0
    tokens: int = 0
    model_s: float = 0.0
    wall_s: float = 0.0
    by_model: dict[str, float] = field(default_factory=dict)  # model-seconds per model

    def add(self, attempt: Attempt, target: float) -> None:
        self.solved = self.solved or attempt.score >= target
        self.attempts += 1
        self.tokens += attempt.tokens_prompt + attempt.tokens_completion
        self.model_s += attempt.t_generate
        self.wall_s += attempt.t_generate + attempt.t_build + attempt.t_test
        self.by_model[attempt.model] = self.by_model.get(attempt.model, 0.0) + attempt.t_generate


@dataclass
class ArmTotals:
    arm: str
    solved: int = 0
    problems: int = 0
    attempts: int = 0
    tokens: int = 0
    model_s: float = 0.0
    wall_s: float = 0.0
    solved_ids: list[str] = field(default_factory=list)

    def add(self, task: str, outcome: Outcome) -> None:
        self.problems += 1
        self.solved += outcome.solved
        self.attempts += outcome.attempts
        self.tokens += outcome.tokens
        self.model_s += outcome.model_s
        self.wall_s += outcome.wall_s
        if outcome.solved:
            self.solved_ids.append(task)

    @property
    def solved_per_model_minute(self) -> float:
        return self.solved / (self.model_s / 60) if self.model_s else 0.0

    def to_dict(self) -> dict:
        return {**asdict(self), "solved_per_model_minute": round(self.solved_per_model_minute, 3)}

    @classmethod
    def from_dict(cls, data: dict) -> ArmTotals:
        return cls(**{f: data[f] for f in ("arm", "solved", "problems", "attempts", "tokens", "model_s", "wall_s",
                                           "solved_ids")})

    def plus(self, other: ArmTotals) -> ArmTotals:
        return ArmTotals(self.arm, self.solved + other.solved, self.problems + other.problems,
                         self.attempts + other.attempts, self.tokens + other.tokens, self.model_s + other.model_s,
                         self.wall_s + other.wall_s, self.solved_ids + other.solved_ids)


def merge_pieces(pieces: Sequence[dict]) -> dict:
    """One result from the result files of contiguous ranges run in separate sittings, each
    from an empty record; the arms' totals are summed.  UsageError when the pieces do not
    join up or were run with different ladders."""
    pieces = sorted(pieces, key=lambda p: p["range"][0])
    for before, after in zip(pieces, pieces[1:]):
        if before["range"][1] != after["range"][0]:
            raise UsageError(f"ranges {before['range']} and {after['range']} do not join up (allowed: A:B, B:C, ...)")
        if before["ladder"] != after["ladder"]:
            raise UsageError(f"ranges {before['range']} and {after['range']} were run with different ladders")
    arms: dict[str, ArmTotals] = {}
    for piece in pieces:
        for data in piece["arms"]:
            totals = ArmTotals.from_dict(data)
            arms[totals.arm] = arms[totals.arm].plus(totals) if totals.arm in arms else totals
    return {"range": [pieces[0]["range"][0], pieces[-1]["range"][1]], "ladder": pieces[0]["ladder"],
            "pieces": [p["range"] for p in pieces], "arms": [a.to_dict() for a in arms.values()]}


def humaneval_tasks(start: int, stop: int) -> list[TaskSpec]:
    return [humaneval_spec(p) for p in read_humaneval()[start:stop]]


def arm_names(ladder: Sequence[str]) -> list[str]:
    return [*(f"single {m}" for m in ladder), LOOP, *(f"resample {m}" for m in ladder), f"resample {LADDER}"]


Progress = Callable[[int, TaskSpec, dict[str, Outcome]], None]


class HumanEvalBench:
    """Runs every arm on each problem in turn, problem by problem (so an interruption
    leaves whole problems behind it)."""

    def __init__(self, config: OptimizationConfig, inventory: Inventory, paths: Paths, cache_path: Path,
                 loop_only: bool = False) -> None:
        """``loop_only``: only the loop arm (e.g. to compare two loop settings)."""
        self.loop_only = loop_only
        self.config = config
        self.inventory = inventory
        self.paths = paths
        self.cache_path = cache_path

    async def run(self, tasks: Sequence[TaskSpec], progress: Progress,
                  warn: Callable[[str], None]) -> tuple[list[str], dict[str, ArmTotals]]:
        # The loop's own record, not the learning database: one per range, so a resumed run
        # goes on learning from where it stopped and another range starts from nothing.
        # Runs with lessons in their prompts learn from their own record, not from one without.
        lessons = "-lessons" if self.config.lessons_in_prompts else ""
        db = self.cache_path.with_name(f"humaneval-runs-{tasks[0].id}-{tasks[-1].id}{lessons}.db")
        async with loop_session(self.config, self.inventory, self.paths, db=db, warn=warn) as sup:
            with shared_cache(sup, self.cache_path):
                ladder = [m for m in self.inventory.route(tasks[0].domain).chain if m in (sup.available or ())]
                totals = {name: ArmTotals(name) for name in ([LOOP] if self.loop_only else arm_names(ladder))}
                for number, task in enumerate(tasks, 1):
                    outcomes = await self.problem(sup, task, ladder)
                    for name, outcome in outcomes.items():
                        totals[name].add(task.id, outcome)
                    progress(number, task, outcomes)
        return ladder, totals

    async def problem(self, sup: Supervisor, task: TaskSpec, ladder: Sequence[str]) -> dict[str, Outcome]:
        loop = await self.loop(sup, task)
        if self.loop_only:
            return {LOOP: loop}
        out = {f"single {m}": await self.resample(sup, task, [(m, 0.0)]) for m in ladder}
        out[LOOP] = loop
        for m in ladder:
            out[f"resample {m}"] = await self.resample(sup, task, [(m, loop.model_s)])
        out[f"resample {LADDER}"] = await self.resample(sup, task, [(m, loop.by_model.get(m, 0.0)) for m in ladder
                                                                    if m in loop.by_model])
        return out

    async def loop(self, sup: Supervisor, task: TaskSpec) -> Outcome:
        before = sup.attempts.cache.replayed_s
        started = time.monotonic()
        result = await sup.run_task(task)
        replayed = sup.attempts.cache.replayed_s - before
        return Outcome(result.solved, result.iterations, result.tokens, sum(result.model_seconds.values()),
                       time.monotonic() - started + replayed, dict(result.model_seconds))

    async def resample(self, sup: Supervisor, task: TaskSpec, budgets: Sequence[tuple[str, float]]) -> Outcome:
        """Independent samples of each model, as many as come closest to its budget; stops at the first pass.

        A budget of 0 still takes the first (greedy) sample: that is the single shot.
        """
        target = task.target_score if task.target_score is not None else self.config.target_score
        outcome = Outcome()
        run_id = f"bench-humaneval-{uuid.uuid4().hex[:12]}"
        async with sup.attempts.task_run(task, run_id):
            for model, budget in budgets:
                spent, index = 0.0, 0
                while not outcome.solved and index < MAX_SAMPLES and (index == 0 or _closer(spent, index, budget)):
                    attempt = await judged_sample(sup, task, self.inventory.model(model), index, run_id)
                    outcome.add(attempt, target)
                    spent, index = spent + attempt.t_generate, index + 1
        sup.attempts.retire(run_id, solved=outcome.solved)
        return outcome


def _closer(spent: float, samples: int, budget: float) -> bool:
    """Whether one more sample, at the mean cost so far, ends nearer the budget than stopping now.

    Matching the loop's spend to the nearest sample neither gives the baseline a sample
    it could not afford nor takes one it could.
    """
    return spent + spent / samples / 2 < budget
