"""One task run's judge: its directory, its seed, prepared once, used by every attempt."""

from __future__ import annotations

import contextlib
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator

from kisystem.loop.taskspec import TaskSpec
from kisystem.sandbox.judge import judge_for
from kisystem.sandbox.judge.base import Judge, JudgeContext, Timing, Verdict
from kisystem.sandbox.process import Limits, SandboxLevel

JUDGE_DIR = "judge"  # beside the attempts' workspaces, never inside one


@dataclass(frozen=True)
class JudgedRun:
    """A prepared judge and the context it works in."""

    judge: Judge
    ctx: JudgeContext

    async def test(self, workspace: Path, timeout_s: float) -> Verdict:
        return await self.judge.test(self.ctx, workspace, timeout_s)

    async def time(self, workspace: Path, timeout_s: float, rounds: int) -> Timing:
        return await self.judge.time(self.ctx, workspace, timeout_s, rounds)


@contextlib.asynccontextmanager
async def judged_run(task: TaskSpec, run_dir: Path, level: SandboxLevel,
                     limits: Limits) -> AsyncIterator[JudgedRun | None]:
    """The run's judge, prepared in ``run_dir/judge`` with a fresh seed; None for a task
    whose result is self-reported (no ``[judge]``)."""
    if not task.trusted:
        yield None
        return
    judge_dir = run_dir / JUDGE_DIR
    judge_dir.mkdir(parents=True, exist_ok=False)
    ctx = JudgeContext(judge_dir.resolve(), level, limits, seed=secrets.randbelow(2**31 - 1) + 1)
    judge = judge_for(task)
    await judge.prepare(ctx)
    yield JudgedRun(judge, ctx)
