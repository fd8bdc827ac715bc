"""Build, test and profile phases: sandboxed, gated, retried only when transient.

A phase re-runs on the same code only when its failure is transient (timeout, killed
from outside, infrastructure), up to ``retry_build/test/profile`` times (DESIGN decision
4).  A deterministic failure ends the phase at once with the categorizer's verdict.
Builds share a semaphore of ``max_concurrent_builds`` across every task; profiles run
one at a time.  Fixed files are restored before every run and mounted read-only.
A task with a judge is tested by it (:meth:`PhaseRunner.run_judged`): the result is the
judge's verdict, never the program's own report.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, replace
from typing import AsyncIterator, Awaitable, Callable, Mapping

from kisystem.config import SANDBOX_LEVELS, OptimizationConfig
from kisystem.errors import UsageError
from kisystem.loop.categorizer import ErrorCategorizer, ErrorInfo, Phase
from kisystem.sandbox import Limits, ProcessResult, SandboxLevel, detect_sandbox_level, level_rank, run_sandboxed
from kisystem.sandbox.judge.base import Timing, Verdict
from kisystem.sandbox.judge.session import JudgedRun
from kisystem.loop.taskspec import PhaseSpec
from kisystem.loop.workspace import Workspace

NO_ADDRESS_LIMIT_LANGUAGES = frozenset({"cuda"})  # the CUDA runtime maps huge virtual ranges


@dataclass(frozen=True)
class PhaseRun:
    phase: Phase
    result: ProcessResult
    attempts: int
    duration_s: float  # all attempts together
    error: ErrorInfo | None  # None when the phase succeeded
    verdict: Verdict | None = None  # a judged test's result

    @property
    def ok(self) -> bool:
        return self.error is None


def require_level(level: SandboxLevel, minimum: str) -> None:
    """Refuse a sandbox below the configured ``sandbox_min_level``."""
    if level_rank(level) < level_rank(minimum):
        raise UsageError(f"the sandbox here is {level!s}, below sandbox_min_level {minimum!r}: install bubblewrap "
                         f"(or run as root for unshare), or lower sandbox_min_level (allowed: "
                         f"{', '.join(SANDBOX_LEVELS)})")


def limits_for(language: str, timeout_s: float) -> Limits:
    address = None if language in NO_ADDRESS_LIMIT_LANGUAGES else 4096
    return Limits(cpu_s=int(timeout_s) + 1, address_space_mb=address)


class PhaseRunner:
    """Shared by all supervisors of one process, so the concurrency caps hold across tasks."""

    def __init__(self, config: OptimizationConfig, level: SandboxLevel | None = None,
                 categorizer: ErrorCategorizer | None = None) -> None:
        self.level = level or detect_sandbox_level()
        require_level(self.level, config.sandbox_min_level)
        self.categorizer = categorizer or ErrorCategorizer()
        self.retries = {Phase.BUILD: config.retry_build, Phase.TEST: config.retry_test,
                        Phase.PROFILE: config.retry_profile}
        self._build_slots = asyncio.Semaphore(config.max_concurrent_builds)
        self._profile_lock = asyncio.Lock()

    async def run(self, phase: Phase, spec: PhaseSpec, workspace: Workspace,
                  fixed: Mapping[str, str], language: str) -> PhaseRun:
        limits = limits_for(language, spec.timeout_s)

        async def once() -> tuple[ProcessResult, Verdict | None]:
            result = await run_sandboxed(spec.command, workspace.path, spec.timeout_s, limits,
                                         readonly_paths=workspace.fixed_paths(), level=self.level)
            return result, None

        async with self._gate(phase):
            return await self._retried(phase, workspace, fixed, once)

    async def run_judged(self, judged: JudgedRun, workspace: Workspace, fixed: Mapping[str, str],
                         timeout_s: float) -> PhaseRun:
        """The test phase of a judged task: the verdict decides, retried like :meth:`run`."""

        async def once() -> tuple[ProcessResult, Verdict | None]:
            verdict = await judged.test(workspace.path, timeout_s)
            return _judged_result(verdict), verdict

        return await self._retried(Phase.TEST, workspace, fixed, once)

    async def _retried(self, phase: Phase, workspace: Workspace, fixed: Mapping[str, str],
                       once: Callable[[], Awaitable[tuple[ProcessResult, Verdict | None]]]) -> PhaseRun:
        """``once`` on freshly restored fixed files, again while it fails transiently."""
        spent, attempt = 0.0, 0
        while True:
            attempt += 1
            workspace.restore_fixed(fixed)
            result, verdict = await once()
            spent += result.duration_s
            passed = verdict.ok if verdict is not None else result.succeeded
            if passed:
                return PhaseRun(phase, result, attempt, spent, None, verdict)
            exit_code = 1 if result.exit_code == 0 else result.exit_code  # exit 0 cannot pass a failed judgement
            error = self.categorizer.categorize(phase, exit_code, result.output,
                                                timed_out=result.timed_out, signal=result.signal)
            if not error.transient or attempt > self.retries[phase]:
                return PhaseRun(phase, result, attempt, spent, error, verdict)

    async def time_judged(self, judged: JudgedRun, workspace: Workspace, fixed: Mapping[str, str],
                          timeout_s: float, rounds: int) -> Timing:
        """Timing by the judge, from outside the candidate; one profile at a time, like :meth:`run`."""
        async with self._gate(Phase.PROFILE):
            workspace.restore_fixed(fixed)
            return await judged.time(workspace.path, timeout_s, rounds)

    @contextlib.asynccontextmanager
    async def _gate(self, phase: Phase) -> AsyncIterator[None]:
        gate = {Phase.BUILD: self._build_slots, Phase.PROFILE: self._profile_lock}.get(phase)
        if gate is None:
            yield
            return
        async with gate:
            yield


def _judged_result(verdict: Verdict) -> ProcessResult:
    """The candidate's process result, its log followed by the judge's finding."""
    notes = [verdict.candidate.output.rstrip(), verdict.detail]
    if verdict.skipped:
        notes.append(f"skipped: {verdict.skipped}")
    notes.append(f"judge: {verdict.passed} of {verdict.total} tests passed")
    return replace(verdict.candidate, output="\n".join(n for n in notes if n))
