"""The optimization loop for one task: generate, build, test, (profile), score, repeat.

Each iteration asks the current model for code, builds and tests it in a fresh
sandboxed workspace and scores it.  At ``target_score`` the task succeeds.  Passing code
under target gets an optimize prompt; failing code a fix prompt with the error excerpt
and the categorizer's hint, and one fail on the model's stop-loss (see ``router``).
Every exit writes one learning record; run events are appended as they happen.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Awaitable, Callable, Protocol, Sequence

from kisystem import interrupts
from kisystem.config import OptimizationConfig
from kisystem.errors import (
    BackendCooledDown,
    BackendError,
    BackendUnreachable,
    KisystemError,
    ModelNotFound,
    PromptTooLong,
)
from kisystem.executors.base import AttemptJob, Executor, LocalExecutor
from kisystem.loop import prompts
from kisystem.loop.attempt import Attempt, AttemptRunner
from kisystem.loop.router import Decision, StopLossRouter, build_chain
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.context import MIN_ANSWER_TOKENS
from kisystem.routing.policy import RoutingPolicy, choose_start
from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.models.inventory import Inventory
from kisystem.store.learning import LearningStore, RunResult

if TYPE_CHECKING:
    from kisystem.ensemble.loop import EnsembleTurn

# Not this model's fault, and no answer to judge: the task moves on along its chain.
SKIP_MODEL = (ModelNotFound, BackendUnreachable, BackendCooledDown, PromptTooLong)
BACKEND_DOWN = (BackendUnreachable, BackendCooledDown)
TRIM_TRIES = 3  # shorter and shorter feedback before a prompt is given up as too long
WAIT_NOTICE_S = 15.0  # silence before the first token that the live view hears about


class CapabilityFloor(Protocol):
    """Where along the chain a task must be, given how it has failed (the hybrid decision)."""

    def floor(self, task: TaskSpec, chain: Sequence[str], index: int, retry: int, error_type: str) -> int: ...


class Generator(Protocol):
    """Anything that answers a GenerationRequest: the HTTP ModelClient, or a scripted fake."""

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation: ...


@dataclass(frozen=True)
class LoopEvent:
    kind: str  # start, generate, build, test, profile, score, escalate, exit
    task: str
    run_id: str
    iteration: int
    model: str
    data: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TaskResult:
    run_id: str
    task: str
    outcome: str  # success, failed, exhausted, aborted, error, interrupted
    score: float
    iterations: int
    model: str
    models_tried: tuple[str, ...]
    reason: str
    tokens: int
    wall_s: float
    model_seconds: dict[str, float]  # generation time per model
    model_attempts: dict[str, int]  # iterations per model
    judged_by: str = "self-reported"  # calls / compare: a trusted judge decided; self-reported: untrusted

    @property
    def solved(self) -> bool:
        return self.outcome == "success"


@dataclass
class _Tally:
    """What a run has spent so far, summed over iterations."""

    t_build: float = 0.0
    t_test: float = 0.0
    t_profile: float = 0.0
    tokens_prompt: int = 0
    tokens_completion: int = 0
    best_score: float = 0.0
    last: Attempt | None = None
    model_seconds: dict[str, float] = field(default_factory=dict)
    model_attempts: dict[str, int] = field(default_factory=dict)

    def add(self, attempt: Attempt) -> None:
        self.t_build += attempt.t_build
        self.t_test += attempt.t_test
        self.t_profile += attempt.t_profile
        self.tokens_prompt += attempt.tokens_prompt
        self.tokens_completion += attempt.tokens_completion
        self.best_score = max(self.best_score, attempt.score)
        self.model_seconds[attempt.model] = self.model_seconds.get(attempt.model, 0.0) + attempt.t_generate
        self.model_attempts[attempt.model] = self.model_attempts.get(attempt.model, 0) + 1
        self.last = attempt


class Supervisor:
    def __init__(self, config: OptimizationConfig, inventory: Inventory, generator: Generator,
                 store: LearningStore, attempts: AttemptRunner,
                 on_event: Callable[[LoopEvent], None] | None = None,
                 available: set[str] | None = None, policy: RoutingPolicy | None = None,
                 floor: CapabilityFloor | None = None, hot_domains: Callable[[], list[str]] | None = None,
                 lessons: Callable[[str, str], str] | None = None, ensemble: EnsembleTurn | None = None,
                 executor: Executor | None = None) -> None:
        """``lessons(domain, model)``: lessons from earlier runs for fix and optimize prompts; ``ensemble``:
        the ensemble's turn around the chain (default: as ``ensemble.in_loop`` configures, off); ``executor``:
        where each attempt's work runs (default: here, :class:`~kisystem.executors.LocalExecutor`)."""
        from kisystem.ensemble.loop import in_loop_strategy

        self.ensemble = ensemble if ensemble is not None else in_loop_strategy(config)
        self.config = config
        self.lessons = lessons
        self.policy = policy
        self.floor = floor
        self.hot_domains = hot_domains
        self.inventory = inventory
        self.store = store
        self.attempts = attempts
        self.generator = generator
        self.on_event = on_event
        self.available = available
        self.executor: Executor = executor or LocalExecutor()

    async def run_task(self, task: TaskSpec, start_model: str | None = None) -> TaskResult:
        route = build_chain(self.inventory.route(task.domain).chain, self.available)
        if not route:
            raise KisystemError(f"task {task.id}: no model of route {task.domain!r} is available")
        advised = None if start_model else choose_start(self.policy, task, route)
        chain = build_chain(route, None, start_model or advised)
        own = {m: self.inventory.model(m).stoploss for m in chain}
        router = StopLossRouter(chain, self.config.stoploss_per_model, {m: n for m, n in own.items() if n})
        run_id = self.store.start_run(task.id, task.domain, router.current, sandbox=str(self.attempts.level),
                                      judge=task.judged_by)
        started, tally = time.monotonic(), _Tally()
        outcome, reason, iterations = "error", "crashed", 0
        try:  # from the row's first moment: a signal in the start events still records the run interrupted
            self._emit("start", task, run_id, 0, router.current, chain=list(chain))
            self._log_routing(task, run_id, route, advised)
            async with self.attempts.task_run(task, run_id):
                outcome, reason, iterations = await self._strategy(task, run_id, router, tally)
        except (asyncio.CancelledError, KeyboardInterrupt) as err:  # Ctrl-C, SIGTERM, SIGHUP, a cancelled worker
            outcome, reason = "interrupted", interrupts.reason(
                "cancelled (Ctrl-C, or its caller stopped)" if isinstance(err, asyncio.CancelledError) else "Ctrl-C")
            raise
        except Exception as err:  # recorded, then re-raised: a crash loses no data
            reason = f"{type(err).__name__}: {err}"
            raise
        finally:
            result = self._finish(task, run_id, router, tally, outcome, reason, iterations, started)
            self.attempts.retire(run_id, solved=result.solved)
        return result

    def _strategy(self, task: TaskSpec, run_id: str, router: StopLossRouter,
                  tally: _Tally) -> Awaitable[tuple[str, str, int]]:
        """The chain's iterations, with the ensemble's turn around them where configured (kisystem.ensemble.loop)."""
        if self.ensemble is None:
            return self._iterate(task, run_id, router, tally)
        return self.ensemble.around(self, self._iterate, task, run_id, router, tally)

    async def _iterate(self, task: TaskSpec, run_id: str, router: StopLossRouter,
                       tally: _Tally) -> tuple[str, str, int]:
        target = task.target_score if task.target_score is not None else self.config.target_score
        budget = task.max_iterations or self.config.max_optimization_iterations
        feedback: prompts.Feedback | None = None
        tries_on_model = 0
        for iteration in range(1, budget + 1):
            model = router.current
            try:
                attempt = await self._attempt(task, run_id, iteration, model, feedback, tries_on_model)
            except SKIP_MODEL as err:
                self._emit("skip", task, run_id, iteration, model, reason=str(err))
                decision, attempt, skipped = router.escalate(), None, str(err)
                if decision is Decision.EXHAUSTED and isinstance(err, BACKEND_DOWN) and tally.last is None:
                    raise  # no model answered at all: the backend is down, not the task hopeless
            else:
                skipped = ""
                tally.add(attempt)
                if attempt.score >= target:
                    return "success", f"score {attempt.score:.0f} >= target {target}", iteration
                if attempt.failure is None:  # passes, but under target: optimize on the same model
                    feedback, tries_on_model = self._taught(attempt.feedback(target), task, model), tries_on_model + 1
                    continue
                decision = router.record_failure(attempt.failure)
                if decision is Decision.CONTINUE:
                    decision = self._raise_floor(task, router, attempt.failure.error_type)
            if decision is Decision.ABORT:
                return "aborted", attempt.failure.hint if attempt else "aborted", iteration
            if decision is Decision.EXHAUSTED:
                last = f"; the last was skipped: {skipped}" if skipped else ""
                return "exhausted", f"every model of the chain failed: {', '.join(router.tried)}{last}", iteration
            if decision is Decision.ESCALATE:
                self._emit("escalate", task, run_id, iteration, router.current, previous=model)
                feedback, tries_on_model = None, 0
            else:
                feedback = self._taught(self._next_feedback(attempt, target), task, model)
                tries_on_model += 1
        return "failed", f"{budget} iterations spent; best score {tally.best_score:.0f} < target {target}", budget

    def _next_feedback(self, attempt: Attempt, target: float) -> prompts.Feedback | None:
        """A repair prompt, or None for a fresh sample: a wrong answer (LOGIC) is resampled
        unless ``repair_logic_errors``, since small models' repairs of wrong answers fixed
        fewer than fresh samples did; a crash, a syntax error or a cut-off answer is repaired."""
        if attempt.failure.error_type == "LOGIC" and not attempt.cut_off and not self.config.repair_logic_errors:
            return None
        return attempt.feedback(target)

    def _taught(self, feedback: prompts.Feedback | None, task: TaskSpec, model: str) -> prompts.Feedback | None:
        """The feedback with the lessons earlier runs taught about this model and domain."""
        if feedback is None or self.lessons is None:
            return feedback
        return replace(feedback, lessons=self.lessons(task.domain, model))

    async def _attempt(self, task: TaskSpec, run_id: str, iteration: int, model: str,
                       feedback: prompts.Feedback | None, tries_on_model: int) -> Attempt:
        emit = lambda kind, **data: self._emit(kind, task, run_id, iteration, model, **data)  # noqa: E731
        job = AttemptJob(task, run_id, iteration, model, feedback, tries_on_model)
        return await self.executor.attempt(self, job, emit)

    async def attempt_here(self, job: AttemptJob, emit: Callable[..., None]) -> Attempt:
        """One attempt's work in this process (generate, then build, test, profile): what the
        local executor runs, and what a Ray worker runs for the remote one."""
        task, model, feedback, tries_on_model = job.task, job.model, job.feedback, job.tries_on_model
        spec = self.inventory.model(model)
        request = self.attempts.request_for(task, spec.name, spec.mode, feedback, tries_on_model, spec.max_tokens)
        emit("generate", temperature=request.temperature)
        try:
            request, generation = await self._generate(request, feedback, emit,
                                                       lambda fb: self.attempts.request_for(
                                                           task, spec.name, spec.mode, fb, tries_on_model,
                                                           spec.max_tokens))
        except SKIP_MODEL:
            raise
        except BackendError as err:
            emit("score", score=None, error=str(err))  # no answer: no score, the reason instead
            return Attempt.generation_failed(model, err)
        return await self.attempts.run(task, job.run_id, job.iteration, model, spec.mode, request, generation, emit)

    async def _generate(self, request: GenerationRequest, feedback: prompts.Feedback | None, emit: Callable,
                        request_for: Callable[[prompts.Feedback | None], GenerationRequest],
                        ) -> tuple[GenerationRequest, Generation]:
        """Ask the model; a prompt too long for its context gets its feedback (previous code,
        error excerpt) trimmed and is asked again, up to TRIM_TRIES times."""
        for _ in range(TRIM_TRIES):
            try:
                return request, await self._ask(request, emit)
            except PromptTooLong as err:
                keep = 0.8 * (err.context - MIN_ANSWER_TOKENS) / err.tokens
                feedback = feedback.trimmed(keep) if feedback and keep > 0 else None
                if feedback is None:
                    raise
                emit("trim", tokens=err.tokens, context=err.context, keep=round(keep, 2))
                request = request_for(feedback)
        return request, await self._ask(request, emit)

    async def _ask(self, request: GenerationRequest, emit: Callable) -> Generation:
        """The model's answer; a ``waiting`` event every WAIT_NOTICE_S while no token has come."""
        first_token = asyncio.Event()
        call = asyncio.ensure_future(self.generator.generate(request, on_text=lambda _: first_token.set()))
        started = time.monotonic()
        try:
            while not (await asyncio.wait({call}, timeout=WAIT_NOTICE_S))[0]:
                if not first_token.is_set():
                    emit("waiting", seconds=round(time.monotonic() - started), persist=False)
            return call.result()
        finally:
            call.cancel()  # a no-op once done; else the run itself is being cancelled

    def _log_routing(self, task: TaskSpec, run_id: str, route: tuple[str, ...], advised: str | None) -> None:
        if advised and advised != route[0]:
            self._emit("bias", task, run_id, 0, advised, replaces=route[0], policy=self.policy.name)
        if self.hot_domains and task.domain in self.hot_domains():
            self._emit("priority", task, run_id, 0, route[0], domain=task.domain, top=3)

    def _raise_floor(self, task: TaskSpec, router: StopLossRouter, error_type: str) -> Decision:
        """The hybrid decision may lift a struggling task up the chain before its stop-loss."""
        if self.floor is None:
            return Decision.CONTINUE
        index = self.floor.floor(task, router.chain, router.index, router.fails, error_type)
        return router.raise_to(index)

    def _finish(self, task: TaskSpec, run_id: str, router: StopLossRouter, tally: _Tally,
                outcome: str, reason: str, iterations: int, started: float) -> TaskResult:
        last, wall = tally.last, time.monotonic() - started
        failure = last.failure if last and outcome != "success" else None
        tried, ended_on = _used(router, tally)
        self.store.finish_run(run_id, RunResult(
            model=ended_on, iter=iterations, score_final=tally.best_score, outcome=outcome,
            phase=failure.phase if failure else None, reason=reason,
            t_build=tally.t_build, t_test=tally.t_test, t_profile=tally.t_profile,
            tokens_prompt=tally.tokens_prompt, tokens_completion=tally.tokens_completion,
            error_type=failure.error_type if failure else None, models_tried=tried, wall_s=wall))
        self._emit("exit", task, run_id, iterations, ended_on, persist=False,  # the store logs "finished"
                   outcome=outcome, reason=reason, score=tally.best_score)
        return TaskResult(run_id, task.id, outcome, tally.best_score, iterations, ended_on,
                          tried, reason, tally.tokens_prompt + tally.tokens_completion, wall,
                          dict(tally.model_seconds), dict(tally.model_attempts), task.judged_by)

    def _emit(self, kind: str, task: TaskSpec, run_id: str, iteration: int, model: str,
              persist: bool = True, **data) -> None:
        if persist:
            self.store.append_event(run_id, kind, {"iteration": iteration, "model": model, **data})
        if self.on_event:
            self.on_event(LoopEvent(kind, task.id, run_id, iteration, model, data))


def _used(router: StopLossRouter, tally: _Tally) -> tuple[tuple[str, ...], str]:
    """The models tried and the one the run ended on, without a model escalated to when no
    iteration was left for it (it never answered, so it earns no evidence)."""
    tried = list(router.tried)
    if len(tried) > 1 and tried[-1] not in tally.model_attempts and tally.last is not None:
        tried.pop()
    return tuple(tried), tally.last.model if tally.last is not None else router.current
