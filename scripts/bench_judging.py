#!/usr/bin/env python
"""Overhead of the trusted judges against the self-reported judging they replaced.

Both ways run here, in one process, on the same sandbox, task by task (which goes first
alternates): the old HumanEval harness and the old task pack come from git commit
OLD_COMMIT (the last one before the judges), so run this inside a clone of kisystem.

  HumanEval (every 4th problem of the development half 0-79, canonical solutions):
    old: build + one sandboxed run of the self-reporting harness
    new: build + the calls judge (candidate run + replay); record (once per task run) apart
  Task pack (the native tasks, their reference solutions as the candidate):
    old: build (test and bench binaries) + test + one tier-0 bench run (9 self-timed rounds)
    new: build + the compare judge's test + its timing (5 rounds of candidate and reference);
         the reference's build and expected cases (once per task run) apart

Usage: python scripts/bench_judging.py [--json]
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from statistics import median

from kisystem.config import OptimizationConfig
from kisystem.loop.categorizer import Phase
from kisystem.loop.humaneval import humaneval_spec, read_humaneval
from kisystem.loop.phases import PhaseRunner, limits_for
from kisystem.loop.profiling import JUDGED_ROUNDS, TIER0_MIN_MS, TIER0_REPEATS, TIER0_WARMUP, _env_prefix
from kisystem.loop.taskspec import PhaseSpec, TaskSpec, load_task
from kisystem.loop.workspace import Workspace
from kisystem.sandbox.judge.session import judged_run
from kisystem.taskpack import reference_solution

OLD_COMMIT = "f3ff4e2"
ROOT = Path(__file__).resolve().parents[1]
PACK_DIR = ROOT / "src" / "kisystem" / "taskpack"
HUMANEVAL = range(0, 80, 4)
PACK = ("histogram", "matmul", "fir", "biquad", "prefix_sum", "hashmap", "substring")


def git_show(path: str) -> bytes:
    return subprocess.run(["git", "show", f"{OLD_COMMIT}:{path}"], cwd=ROOT, capture_output=True, check=True).stdout


def old_humaneval_module():
    spec = importlib.util.spec_from_loader("old_humaneval", loader=None)
    module = importlib.util.module_from_spec(spec)
    exec(git_show("src/kisystem/loop/humaneval.py"), module.__dict__)  # noqa: S102 - our own history
    return module


def old_taskpack(dest: Path) -> Path:
    archive = subprocess.run(["git", "archive", OLD_COMMIT, "src/kisystem/taskpack"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest)  # noqa: S202 - our own history
    return dest / "src" / "kisystem" / "taskpack"


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


async def built(phases: PhaseRunner, task: TaskSpec, root: Path, name: str, code: str) -> Workspace:
    workspace = Workspace.create(root, name, 0)
    workspace.write_files({**task.starter, task.solution_file: code})
    if task.build:
        run = await phases.run(Phase.BUILD, task.build, workspace, task.fixed, task.language)
        assert run.ok, run.result.output[-500:]
    return workspace


async def old_way(phases: PhaseRunner, task: TaskSpec, root: Path, code: str, bench: bool) -> float:
    timer = Timer()
    workspace = await built(phases, task, root, "old", code)
    test = await phases.run(Phase.TEST, task.test, workspace, task.fixed, task.language)
    assert test.ok, test.result.output[-500:]
    if bench and task.profile:
        command = _env_prefix(TIER0_WARMUP, TIER0_REPEATS, TIER0_MIN_MS) + task.profile.command
        run = await phases.run(Phase.PROFILE, PhaseSpec(command, task.profile.timeout_s), workspace,
                               task.fixed, task.language)
        assert run.ok, run.result.output[-500:]
    return timer()


async def new_way(phases: PhaseRunner, task: TaskSpec, root: Path, code: str, bench: bool) -> tuple[float, float]:
    """(per-attempt seconds, once-per-run seconds)."""
    timer = Timer()
    async with judged_run(task, root / "new", phases.level, limits_for(task.language, task.test.timeout_s)) as judged:
        prepared = timer()
        assert judged is not None
        timer = Timer()
        workspace = await built(phases, task, root / "new", "attempt", code)
        test = await phases.run_judged(judged, workspace, task.fixed, task.test.timeout_s)
        assert test.ok, test.result.output[-500:]
        if bench and task.profile:
            timing = await phases.time_judged(judged, workspace, task.fixed, task.profile.timeout_s, JUDGED_ROUNDS)
            assert timing.ok, timing.error
        return timer(), prepared


async def compare(label: str, old: TaskSpec, new: TaskSpec, code: str, bench: bool, order: int) -> dict:
    phases = PhaseRunner(OptimizationConfig())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if order % 2 == 0:
            old_s = await old_way(phases, old, root, code, bench)
            new_s, once_s = await new_way(phases, new, root, code, bench)
        else:
            new_s, once_s = await new_way(phases, new, root, code, bench)
            old_s = await old_way(phases, old, root, code, bench)
    return {"task": label, "old_s": old_s, "new_s": new_s, "once_s": once_s,
            "per_attempt": new_s / old_s, "first_attempt": (new_s + once_s) / old_s}


async def run_all() -> dict[str, list[dict]]:
    old_he = old_humaneval_module()
    problems = read_humaneval()
    rows: dict[str, list[dict]] = {"humaneval": [], "pack": []}
    for i, n in enumerate(HUMANEVAL):
        problem = problems[n]
        code = problem["prompt"] + problem["canonical_solution"]
        rows["humaneval"].append(await compare(problem["task_id"], old_he.humaneval_spec(problem),
                                               humaneval_spec(problem), code, False, i))
    with tempfile.TemporaryDirectory() as tmp:
        old_pack = old_taskpack(Path(tmp))
        for i, name in enumerate(PACK):
            new = load_task(PACK_DIR / f"{name}.toml")
            old = load_task(old_pack / f"{name}.toml")
            code = reference_solution(new)[new.solution_file]
            rows["pack"].append(await compare(new.id, old, new, code, True, i))
    return rows


def summary(rows: list[dict]) -> dict[str, float]:
    return {key: round(median(r[key] for r in rows), 3) for key in ("old_s", "new_s", "once_s", "per_attempt",
                                                                     "first_attempt")}


def main() -> None:
    rows = asyncio.run(run_all())
    if "--json" in sys.argv:
        print(json.dumps({k: {"median": summary(v), "rows": v} for k, v in rows.items()}, indent=2))
        return
    for kind, items in rows.items():
        print(f"\n{kind}: task, old s, new s per attempt, once per run s, new/old per attempt, first attempt")
        for r in items:
            print(f"  {r['task']:<22} {r['old_s']:6.2f} {r['new_s']:6.2f} {r['once_s']:6.2f} "
                  f"{r['per_attempt']:5.2f}x {r['first_attempt']:5.2f}x")
        m = summary(items)
        print(f"  median: new/old {m['per_attempt']:.2f}x per attempt, {m['first_attempt']:.2f}x on a run's "
              f"first attempt (old {m['old_s']:.2f} s, new {m['new_s']:.2f} s + {m['once_s']:.2f} s once)")


if __name__ == "__main__":
    main()
