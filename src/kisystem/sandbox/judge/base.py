"""What every judge returns, and the context it runs in.

A judge decides a candidate's result from what it observes outside the candidate's
process: answers to inputs it chose, compared with expected values it holds or computes
from a reference in a process of its own; times it measured from outside.  Nothing the
candidate prints or exits with can raise its result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Protocol

from kisystem.errors import KisystemError
from kisystem.loop.workspace import replace_file
from kisystem.sandbox.process import Limits, ProcessResult, SandboxLevel

DETAIL_CHARS = 2000  # of a failure description shown to the model


class JudgeError(KisystemError):
    """The judge itself failed (its reference does not build, its script crashed): the
    task is broken, not the candidate.  The loop aborts the run with this message."""


@dataclass(frozen=True)
class JudgeContext:
    """Where a judge works: ``judge_dir`` holds its own files (the task's fixed files and
    its judge-only files) and is never in the candidate's view; one per task run."""

    judge_dir: Path
    level: SandboxLevel
    limits: Limits
    seed: int  # fresh per run; the judge derives its inputs from it


@dataclass(frozen=True)
class Verdict:
    """The judge's test result.  ``candidate`` is how the candidate's process ended (its
    ``output`` is the candidate's log, for the error categorizer and the model)."""

    passed: int
    total: int
    detail: str  # the first failure, in a few lines; "" when all passed
    candidate: ProcessResult
    skipped: str = ""  # the trusted reference cannot run here (e.g. no GPU): why

    @property
    def ok(self) -> bool:
        return self.total > 0 and self.passed == self.total and not self.skipped


@dataclass(frozen=True)
class Timing:
    """Rounds timed from outside: each a whole process run on judge-chosen input,
    candidate and reference alternating.  Empty when the timing failed (``error``)."""

    candidate_s: tuple[float, ...] = ()
    reference_s: tuple[float, ...] = ()
    candidate_cpu_s: tuple[float, ...] = ()
    reference_cpu_s: tuple[float, ...] = ()
    error: str = ""  # e.g. the candidate's output differed from the reference's in a timed run
    skipped: str = ""

    @property
    def ok(self) -> bool:
        return bool(self.candidate_s) and not self.error and not self.skipped

    def metrics(self) -> dict[str, float]:
        """Named figures as the scoring reads them (``best_wall_s`` and its reference pair)."""
        out: dict[str, float] = {}
        for prefix, wall, cpu in (("", self.candidate_s, self.candidate_cpu_s),
                                  ("reference_", self.reference_s, self.reference_cpu_s)):
            if wall:
                out[prefix + "best_wall_s"] = min(wall)
                out[prefix + "wall_s"] = median(wall)
            if cpu:
                out[prefix + "cpu_s"] = min(cpu)
        return out


class Judge(Protocol):
    """One task's judge.  ``prepare`` once per run, then ``test`` (and ``time``) per attempt."""

    async def prepare(self, ctx: JudgeContext) -> None: ...

    async def test(self, ctx: JudgeContext, workspace: Path, timeout_s: float) -> Verdict: ...

    async def time(self, ctx: JudgeContext, workspace: Path, timeout_s: float, rounds: int) -> Timing: ...


def clip(text: str, limit: int = DETAIL_CHARS) -> str:
    return text if len(text) <= limit else text[:limit] + " ..."


def write_fresh(path: Path, text: str) -> None:
    """Write ``path`` anew, whatever is there (a file, a symlink, a directory); no write
    goes through a planted link."""
    replace_file(path, text.encode("utf-8"), mode=0o644, repair=True)
