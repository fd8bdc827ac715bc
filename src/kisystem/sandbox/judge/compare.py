"""The compare judge: a candidate program's output against a reference program's.

A task's trusted driver is compiled with the candidate's solution (the task's
``[build]``, in the candidate's workspace) and with a reference solution the candidate
never sees (``judge.build``, in the judge's directory, which holds the task's fixed
files and the judge-only files).  Both programs speak one protocol (see the task
pack's ``common/kbench.h``):

``PROG test SEED``
    generates the test cases from SEED (edge cases plus fresh random ones), calls the
    function and prints ``case <name> <tokens...>`` per case: its output, or a digest.
``PROG bench SEED``
    generates the benchmark input from SEED, calls the function a fixed number of
    times, changing the input a little in between (a cached result is then wrong),
    and prints ``digest <rep> <tokens...>`` per call.
``KISYSTEM_SKIP <reason>`` (exit 0)
    the program cannot run here (a CUDA task without a GPU).  Only the reference's
    skip counts: it is trusted; the candidate's means nothing.

The driver writes these lines to a private copy of stdout and points fd 1 at stderr
first thing in ``main``, so the solution's own prints land in its log.  Tokens are
compared within ``judge.rel_tol`` / ``judge.abs_tol`` (:mod:`.outputs`).  The test
verdict counts matching cases out of the reference's cases.  Timing runs candidate and
reference alternately as fresh processes on a fresh seed per round, measured from
outside (wall and CPU time of the whole process); a round whose digests differ from
the reference's voids the timing.  Nothing the candidate prints about itself (pass
counts, timings, exit status of a successful-looking run) raises its result.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from kisystem.loop.taskspec import JudgeSpec, TaskSpec
from kisystem.sandbox.judge.base import (
    JudgeContext,
    JudgeError,
    Timing,
    Verdict,
    clip,
    write_fresh,
)
from kisystem.sandbox.judge.outputs import (
    Case,
    compare_cases,
    parse_cases,
    repeated_names,
)
from kisystem.sandbox.process import Limits, ProcessResult, run_sandboxed

MAX_OUTPUT = 16 * 1024 * 1024  # test cases print whole float arrays (see kbench.h: KB_FULL)
_SKIP_RE = re.compile(r"^KISYSTEM_SKIP (.+?)\s*$", re.MULTILINE)


class CompareJudge:
    """Judge of a ``kind = "compare"`` task; ``prepare`` once per run, then per attempt."""

    def __init__(self, task: TaskSpec) -> None:
        if task.judge is None or task.judge.kind != "compare" or task.judge.build is None:
            raise ValueError(f"task {task.id} has no compare judge")
        self.task = task
        self.spec: JudgeSpec = task.judge
        self._expected: dict[int, list[Case]] = {}  # reference test cases per seed
        self._skipped = ""

    # --- the reference ---------------------------------------------------------------

    async def prepare(self, ctx: JudgeContext) -> None:
        ctx.judge_dir.mkdir(parents=True, exist_ok=True)
        for name, text in {**self.task.fixed, **self.spec.files}.items():
            path = ctx.judge_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_fresh(path, text)
        build = self.spec.build
        assert build is not None
        result = await run_sandboxed(build.command, ctx.judge_dir, build.timeout_s,
                                     _limits(ctx, build.timeout_s), level=ctx.level)
        if not result.succeeded:
            raise JudgeError(f"the reference of {self.task.id} does not build "
                             f"({_ending(result)}):\n{clip(result.output)}")
        await self._expected_cases(ctx, ctx.seed)

    async def _reference(self, ctx: JudgeContext, mode: str, seed: int, timeout_s: float) -> ProcessResult:
        """A run of the reference program; it must succeed, else the task is broken."""
        result = await run_sandboxed(f"{self.spec.command} {mode} {seed}", ctx.judge_dir, timeout_s,
                                     _limits(ctx, timeout_s), level=ctx.level, split_stdout=True,
                                     max_output_bytes=MAX_OUTPUT)
        if not result.succeeded:
            raise JudgeError(f"the reference of {self.task.id} failed on '{mode} {seed}' "
                             f"({_ending(result)}):\n{clip(result.output)}")
        if (skip := _SKIP_RE.search(result.stdout)) is not None:
            self._skipped = skip.group(1)
        return result

    async def _expected_cases(self, ctx: JudgeContext, seed: int) -> list[Case]:
        if seed not in self._expected:
            result = await self._reference(ctx, "test", seed, self.task.test.timeout_s)
            cases = parse_cases(result.stdout)
            if not cases and not self._skipped:
                raise JudgeError(f"the reference of {self.task.id} printed no test cases")
            if twice := repeated_names(cases):
                raise JudgeError(f"the reference of {self.task.id} printed case {twice!r} more than once: "
                                 "case names must be unique")
            self._expected[seed] = cases
        return self._expected[seed]

    # --- the candidate ---------------------------------------------------------------

    async def _candidate(self, ctx: JudgeContext, workspace: Path, command: str, timeout_s: float) -> ProcessResult:
        fixed = [workspace / name for name in self.task.fixed]
        readonly = [p for p in fixed if p.is_file() and not p.is_symlink()]
        return await run_sandboxed(command, workspace, timeout_s, _limits(ctx, timeout_s), level=ctx.level,
                                   split_stdout=True, readonly_paths=readonly, max_output_bytes=MAX_OUTPUT)

    async def test(self, ctx: JudgeContext, workspace: Path, timeout_s: float) -> Verdict:
        expected = await self._expected_cases(ctx, ctx.seed)
        result = await self._candidate(ctx, workspace, f"{self.task.test.command} test {ctx.seed}", timeout_s)
        if self._skipped:
            return Verdict(0, 0, "", result, skipped=self._skipped)
        comparison = compare_cases(expected, parse_cases(result.stdout), self.spec.rel_tol, self.spec.abs_tol)
        detail = comparison.first_failure
        if comparison.first_failure.endswith(": missing"):
            printed = comparison.total - comparison.missing
            detail = f"the program ended after {printed} of {comparison.total} cases ({_ending(result)})"
            if not result.succeeded:
                detail += f"; its log ends:\n{result.output[-1000:]}"
        return Verdict(comparison.passed, comparison.total, clip(detail), result)

    async def time(self, ctx: JudgeContext, workspace: Path, timeout_s: float, rounds: int) -> Timing:
        profile = self.task.profile
        candidate_command = f"{(profile or self.task.test).command} bench"
        reference_timeout = profile.timeout_s if profile else timeout_s
        walls: tuple[list[float], list[float]] = ([], [])
        cpus: tuple[list[float | None], list[float | None]] = ([], [])
        for round_ in range(rounds):
            seed = _round_seed(ctx.seed, round_)
            # Alternate who goes first, so drifting load on the machine hits both alike.
            if round_ % 2 == 0:
                candidate = await self._candidate(ctx, workspace, f"{candidate_command} {seed}", timeout_s)
                reference = await self._reference(ctx, "bench", seed, reference_timeout)
            else:
                reference = await self._reference(ctx, "bench", seed, reference_timeout)
                candidate = await self._candidate(ctx, workspace, f"{candidate_command} {seed}", timeout_s)
            if self._skipped:
                return Timing(skipped=self._skipped)
            if error := self._bench_error(candidate, reference, round_):
                return Timing(error=error)
            for i, result in enumerate((candidate, reference)):
                walls[i].append(result.duration_s)
                cpus[i].append(result.cpu_s)
        return Timing(tuple(walls[0]), tuple(walls[1]), _known(cpus[0]), _known(cpus[1]))

    def _bench_error(self, candidate: ProcessResult, reference: ProcessResult, round_: int) -> str:
        if not candidate.succeeded:
            return clip(f"the benchmark run (round {round_ + 1}) failed ({_ending(candidate)}); "
                        f"its log ends:\n{candidate.output[-1000:]}")
        expected = parse_cases(reference.stdout, "digest")
        comparison = compare_cases(expected, parse_cases(candidate.stdout, "digest"),
                                   self.spec.rel_tol, self.spec.abs_tol)
        if comparison.passed < comparison.total:
            return clip(f"wrong result in the benchmark (round {round_ + 1}, {comparison.passed} of "
                        f"{comparison.total} calls right): {comparison.first_failure}")
        return ""


def _limits(ctx: JudgeContext, timeout_s: float) -> Limits:
    return replace(ctx.limits, cpu_s=max(ctx.limits.cpu_s, int(timeout_s) + 1))


def _round_seed(seed: int, round_: int) -> int:
    """A fresh input per timing round: an answer cached on disk by an earlier round is no use."""
    return (seed * 1_000_003 + round_ + 1) % (1 << 63)


def _known(values: list[float | None]) -> tuple[float, ...]:
    return tuple(v for v in values if v is not None) if all(v is not None for v in values) else ()


def _ending(result: ProcessResult) -> str:
    if result.timed_out:
        return "timed out"
    if result.signal is not None:
        return f"killed by signal {result.signal}"
    return f"exit code {result.exit_code}"
