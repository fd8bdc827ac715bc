"""One iteration of the loop on one model: answer -> files -> build -> test -> profile -> score."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, AsyncIterator, Awaitable, Callable, Mapping

from kisystem.errors import BackendError, BackendTimeout
from kisystem.loop import prompts
from kisystem.loop.categorizer import ErrorInfo, Phase
from kisystem.loop.extract import ExtractError, complete_from_prefix, extract_files, whole_statements
from kisystem.loop.phases import PhaseRun, PhaseRunner, limits_for
from kisystem.loop.profiling import TwoTierProfiler
from kisystem.loop.scoring import PerformanceParser, ScoreInput
from kisystem.loop.taskspec import TaskSpec
from kisystem.loop.workspace import UnsafePathError, Workspace, WorkspaceKeeping
from kisystem.models.base import Generation, GenerationRequest, Mode
from kisystem.sandbox import ProcessResult
from kisystem.sandbox.judge.session import JudgedRun, judged_run

if TYPE_CHECKING:
    from kisystem.improve.guardian import Review

CODE_KEPT = 20_000  # characters of an attempt's solution file kept in its run's events
CHAT_MAX_TOKENS = 400  # the answer budgets of a model without its own max_tokens (inventory or configuration)
COMPLETION_MAX_TOKENS = 256

CUT_OFF_HINT = ("The answer was cut off at {tokens} tokens, before it was complete. Reply with the code "
                "only, shorter: no copied docstring, no examples, no tests, no explanation.")

Emit = Callable[..., None]
Reviewer = Callable[[str, str], Awaitable["Review | None"]]  # (language, code) -> findings


@dataclass(frozen=True)
class Failure:
    """Why an iteration failed; the router reads severity, recoverable and signature."""

    error_type: str
    phase: str
    severity: int
    recoverable: bool
    hint: str
    excerpt: str
    signature: str

    @classmethod
    def from_info(cls, info: ErrorInfo) -> "Failure":
        return cls(str(info.error_type), str(info.phase), info.severity, info.recoverable, info.hint,
                   info.excerpt, info.signature)


NO_CODE = Failure("COMPILATION", "GENERATE", 2, True,
                  "Answer with the complete file in one fenced code block.", "the answer held no code",
                  "generate:no-code")


@dataclass
class Attempt:
    model: str
    score: float
    code: str = ""
    failure: Failure | None = None
    t_generate: float = 0.0
    t_build: float = 0.0
    t_test: float = 0.0
    t_profile: float = 0.0
    tokens_prompt: int = 0
    tokens_completion: int = 0
    profile_note: str = ""
    cut_off: bool = False  # the answer hit the token limit

    @classmethod
    def generation_failed(cls, model: str, err: BackendError) -> "Attempt":
        kind = "timeout" if isinstance(err, BackendTimeout) else "backend"
        failure = Failure("RUNTIME", "GENERATE", 3, True, "the model backend failed; try another model",
                          str(err), f"generate:{kind}")
        return cls(model=model, score=0.0, failure=failure)

    def feedback(self, target: float) -> prompts.Feedback:
        if self.failure is None:
            return prompts.Feedback(self.code, score=self.score, target=target, profile=self.profile_note, passed=True)
        f = self.failure
        return prompts.Feedback(self.code, phase=f.phase, error_type=f.error_type, excerpt=f.excerpt, hint=f.hint,
                                score=self.score, target=target)


class AttemptRunner:
    """Turns a model's answer into a scored attempt in a fresh workspace."""

    def __init__(self, phases: PhaseRunner, workspaces_root: Path, parser: PerformanceParser | None = None,
                 profiler: TwoTierProfiler | None = None, keeping: WorkspaceKeeping | None = None,
                 temperatures: tuple[float, float] = (0.8, 0.8), reviewer: Reviewer | None = None) -> None:
        """``reviewer(language, code)``: static analysis of each answer's code, sent as a ``review`` event."""
        self.phases = phases
        self.reviewer = reviewer
        self.sample_temperature, self.repair_temperature = temperatures
        self.root = workspaces_root
        self.keeping = keeping or WorkspaceKeeping()
        self.parser = parser or PerformanceParser()
        self.profiler = profiler or TwoTierProfiler(phases, parser=self.parser)
        self._judged: dict[str, JudgedRun | None] = {}

    @property
    def level(self):
        return self.phases.level

    @contextlib.asynccontextmanager
    async def task_run(self, task: TaskSpec, run_id: str) -> AsyncIterator[JudgedRun | None]:
        """Everything one task run's attempts share: its judge (prepared once, with the
        run's seed), kept until the run ends."""
        limits = limits_for(task.language, task.test.timeout_s)
        async with judged_run(task, self.root.resolve() / run_id, self.level, limits) as judged:
            self._judged[run_id] = judged
            try:
                yield judged
            finally:
                self._judged.pop(run_id, None)

    def retire(self, run_id: str, *, solved: bool) -> None:
        """Remove the run's workspaces and judge directory, or keep them (see WorkspaceKeeping)."""
        self.keeping.retire(self.root.resolve(), run_id, solved=solved)

    def request_for(self, task: TaskSpec, model: str, mode: Mode, feedback: prompts.Feedback | None,
                    tries_on_model: int, max_tokens: int | None = None) -> GenerationRequest:
        """The request for one try; ``max_tokens`` is the model's own answer budget (its ModelSpec's),
        None for the mode's default."""
        # Later tries on a model sample (seeded, so a rerun asks the same), or a retry would repeat the answer.
        temperature = self.repair_temperature if feedback else self.sample_temperature
        sampling = {"temperature": temperature, "seed": tries_on_model} if tries_on_model else {}
        if mode == "completion":
            stop = list(task.completion.stop) if task.completion else []
            return GenerationRequest(model=model, mode=mode, prompt=prompts.completion_prompt(task, feedback),
                                     max_tokens=max_tokens or COMPLETION_MAX_TOKENS, stop=stop, **sampling)
        return GenerationRequest(model=model, mode=mode, messages=prompts.chat_messages(task, feedback),
                                 max_tokens=max_tokens or CHAT_MAX_TOKENS, **sampling)

    async def run(self, task: TaskSpec, run_id: str, iteration: int, model: str, mode: Mode,
                  request: GenerationRequest, generation: Generation, emit: Emit) -> Attempt:
        attempt = Attempt(model=model, score=0.0, t_generate=generation.total_s,
                          tokens_prompt=generation.prompt_tokens, tokens_completion=generation.completion_tokens)
        emit("answer", prompt_tokens=generation.prompt_tokens, completion_tokens=generation.completion_tokens,
             max_tokens=request.max_tokens, finish_reason=generation.finish_reason,
             seconds=round(generation.total_s, 3))
        files = self._files(task, mode, request, generation.text)
        if _cut_off(generation) and task.language == "python" and task.solution_file in files:
            files[task.solution_file] = whole_statements(files[task.solution_file])
        attempt.code = files.get(task.solution_file, "")
        if attempt.code:  # kept with the run: the dashboard shows it, the security scan reads it
            emit("code", language=task.language, file=task.solution_file, code=attempt.code[:CODE_KEPT])
        if not files:
            attempt.failure = NO_CODE
            emit("score", score=0.0, error="no code in the answer")
            return attempt
        await self._review(task, attempt.code, emit)
        workspace = Workspace.create(self.root, run_id, iteration)
        try:
            workspace.write_files({**task.starter, **files})
        except UnsafePathError as err:  # the model's fault, not the user's: a failed iteration
            attempt.failure = replace(NO_CODE, excerpt=str(err), signature="generate:unsafe-path")
            emit("score", score=0.0, error="unsafe file name in the answer")
            return attempt
        attempt = await self._phases(task, workspace, attempt, emit, run_id, iteration)
        attempt.cut_off = _cut_off(generation)
        if attempt.failure and attempt.cut_off:  # the real cause, which the error would hide
            attempt.failure = replace(attempt.failure, hint=CUT_OFF_HINT.format(tokens=request.max_tokens))
        return attempt

    async def _review(self, task: TaskSpec, code: str, emit: Emit) -> None:
        started = time.monotonic()
        review = await self.reviewer(task.language, code) if self.reviewer else None
        if review is not None:  # seconds: so that health does not count the review as generation time
            emit("review", quality=review.quality, security=review.security, findings=review.findings,
                 tools=list(review.tools), seconds=round(time.monotonic() - started, 3))

    def _files(self, task: TaskSpec, mode: Mode, request: GenerationRequest, text: str) -> dict[str, str]:
        if mode == "completion":
            stop = task.completion.stop if task.completion else ()
            return {task.solution_file: complete_from_prefix(request.prompt, text, stop)}
        try:
            files = extract_files(text, task.solution_file)
        except ExtractError:
            return {}
        return {name: body for name, body in files.items() if name not in task.fixed}

    async def _phases(self, task: TaskSpec, workspace: Workspace, attempt: Attempt, emit: Emit,
                      run_id: str, iteration: int) -> Attempt:
        if task.build:
            build = await self._phase(Phase.BUILD, task, workspace, emit)
            attempt.t_build = build.duration_s
            if not build.ok:
                return self._failed(attempt, build, emit)
        test = await self._test(task, run_id, workspace, emit)
        attempt.t_test = test.duration_s
        metrics: Mapping[str, float] = {}
        if test.ok and task.profile:
            metrics = await self._profile(task, workspace, attempt, emit, run_id, iteration)
        attempt.score = self.parser.score(_score_input(task, test, metrics))
        if not test.ok:
            attempt.failure = Failure.from_info(test.error)
        emit("score", score=attempt.score, error=attempt.failure.error_type if attempt.failure else None)
        return attempt

    async def _profile(self, task: TaskSpec, workspace: Workspace, attempt: Attempt, emit: Emit,
                       run_id: str, iteration: int) -> Mapping[str, float]:
        """Two-tier profile; its key figures go to the optimize prompt, tier and metrics to the DB."""
        result = await self.profiler.profile(task, workspace, run_id, iteration, self._judged.get(run_id))
        attempt.t_profile = result.seconds
        attempt.profile_note = result.note()
        emit("profile", **result.payload())
        return result.metrics if result.ok else {}

    async def _phase(self, phase: Phase, task: TaskSpec, workspace: Workspace, emit: Emit) -> PhaseRun:
        spec = {Phase.BUILD: task.build, Phase.TEST: task.test, Phase.PROFILE: task.profile}[phase]
        return _emitted(await self.phases.run(phase, spec, workspace, task.fixed, task.language), emit)

    async def _test(self, task: TaskSpec, run_id: str, workspace: Workspace, emit: Emit) -> PhaseRun:
        """By the run's judge where the task has one, else by the test command's own report."""
        judged = self._judged.get(run_id)
        if judged is None:
            return await self._phase(Phase.TEST, task, workspace, emit)
        return _emitted(await self.phases.run_judged(judged, workspace, task.fixed, task.test.timeout_s), emit)

    def _failed(self, attempt: Attempt, run: PhaseRun, emit: Emit) -> Attempt:
        attempt.failure = Failure.from_info(run.error)
        emit("score", score=0.0, error=attempt.failure.error_type)
        return attempt


def _cut_off(generation: Generation) -> bool:
    return generation.finish_reason == "length"


def _emitted(run: PhaseRun, emit: Emit) -> PhaseRun:
    """``run`` after its event: how it ended and, when judged, the judge's counts."""
    judged = {"judged": True, "passed": run.verdict.passed, "total": run.verdict.total} if run.verdict else {}
    emit(str(run.phase).lower(), ok=run.ok, seconds=round(run.duration_s, 3), attempts=run.attempts, **judged,
         **_resources(run.result), error=run.error.to_dict() if run.error else None)
    return run


def _resources(result: ProcessResult) -> dict[str, float]:
    """The phase's measured peak memory (MB) and CPU (% of the machine), where the sandbox measured them."""
    measured = {"peak_mb": result.peak_mb, "cpu_percent": result.cpu_percent}
    return {k: round(v, 1) for k, v in measured.items() if v is not None}


def _score_input(task: TaskSpec, test: PhaseRun, metrics: Mapping[str, float]) -> ScoreInput:
    """A judged test's counts come from the verdict; a self-reported one's from its output."""
    reference = task.profile.reference_time_s if task.profile else None
    scored = ScoreInput.from_metrics(build_ok=True, test_ok=test.ok, test_output=test.result.output,
                                     metrics=metrics, reference_time_s=reference)
    if test.verdict is None:
        return scored
    return replace(scored, tests_passed=test.verdict.passed, tests_total=test.verdict.total)
