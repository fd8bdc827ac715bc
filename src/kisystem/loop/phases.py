"""Build, test and profile phases: sandboxed, gated, retried only when transient.

A phase re-runs on the same code only when its failure is transient (timeout, killed
from outside, infrastructure), up to ``retry_build/test/profile`` times (DESIGN decision
4).  A deterministic failure ends the phase at once with the categorizer's verdict.
Builds share a semaphore of ``max_concurrent_builds`` across every task; profiles run
one at a time.  Fixed files are restored before every run and mounted read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import AsyncIterator, Mapping

from kisystem.config import OptimizationConfig
from kisystem.loop.categorizer import ErrorCategorizer, ErrorInfo, Phase
from kisystem.sandbox import Limits, ProcessResult, SandboxLevel, detect_sandbox_level, run_sandboxed
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

    @property
    def ok(self) -> bool:
        return self.error is None


def limits_for(language: str, timeout_s: float) -> Limits:
    address = None if language in NO_ADDRESS_LIMIT_LANGUAGES else 4096
    return Limits(cpu_s=int(timeout_s) + 1, address_space_mb=address)


class PhaseRunner:
    """Shared by all supervisors of one process, so the concurrency caps hold across tasks."""

    def __init__(self, config: OptimizationConfig, level: SandboxLevel | None = None,
                 categorizer: ErrorCategorizer | None = None) -> None:
        self.level = level or detect_sandbox_level()
        self.categorizer = categorizer or ErrorCategorizer()
        self.retries = {Phase.BUILD: config.retry_build, Phase.TEST: config.retry_test,
                        Phase.PROFILE: config.retry_profile}
        self._build_slots = asyncio.Semaphore(config.max_concurrent_builds)
        self._profile_lock = asyncio.Lock()

    async def run(self, phase: Phase, spec: PhaseSpec, workspace: Workspace,
                  fixed: Mapping[str, str], language: str) -> PhaseRun:
        limits = limits_for(language, spec.timeout_s)
        spent, attempt, error = 0.0, 0, None
        async with self._gate(phase):
            while attempt <= self.retries[phase]:
                attempt += 1
                workspace.restore_fixed(fixed)
                result = await run_sandboxed(spec.command, workspace.path, spec.timeout_s, limits,
                                             readonly_paths=workspace.fixed_paths(), level=self.level)
                spent += result.duration_s
                if result.succeeded:
                    return PhaseRun(phase, result, attempt, spent, None)
                error = self.categorizer.categorize(phase, result.exit_code, result.output,
                                                    timed_out=result.timed_out, signal=result.signal)
                if not error.transient:
                    break
        return PhaseRun(phase, result, attempt, spent, error)

    @contextlib.asynccontextmanager
    async def _gate(self, phase: Phase) -> AsyncIterator[None]:
        gate = {Phase.BUILD: self._build_slots, Phase.PROFILE: self._profile_lock}.get(phase)
        if gate is None:
            yield
            return
        async with gate:
            yield
