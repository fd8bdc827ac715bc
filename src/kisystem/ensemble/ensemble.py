"""The adaptive ensemble: a question or a task through a tier-sized fan-out, a consensus, a fallback.

``Ensemble.ask(prompt)``: the tier (classified, or given) names the members; they answer at
once (:func:`kisystem.ensemble.fanout.fan_out`), the fan-out stops early once a quorum
(``ensemble.quorum_share`` of the members) gave the same answer, and the consensus picks
the answer (:func:`kisystem.ensemble.consensus.agree`: behaviour, AST or text).  A repeated
question comes from the query cache.

``Ensemble.solve(task)``: every candidate is judged as it arrives, by the loop's own
judging (:meth:`AttemptRunner.run` in the sandbox, the task's judge where it has one); the
fan-out stops once one candidate reaches the target score, and the best score wins
(:func:`kisystem.ensemble.consensus.by_tests`).

Fallback: when a round brings no valid answer (every member failed, timed out or answered
nothing), the ensemble asks once more, the tier below (the simple tier again from simple)
with ``ensemble.fallback_max_tokens_share`` of the answer budget.  Every member is a run in
the learning database (:mod:`kisystem.ensemble.record`).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kisystem.config import OptimizationConfig
from kisystem.ensemble.cache import CacheKey, QueryCache
from kisystem.ensemble.classifier import Classification, classify
from kisystem.ensemble.consensus import (
    NO_CONSENSUS,
    BehaviourRunner,
    Candidate,
    Consensus,
    agree,
    by_tests,
    candidates_of,
    quorum,
)
from kisystem.ensemble.fanout import SETTLED_EARLY, EndpointSemaphores, fan_out
from kisystem.ensemble.members import (
    FanOut,
    Generator,
    Member,
    MemberAnswer,
    NotNeeded,
    Settled,
    Tier,
)
from kisystem.ensemble.record import ASK_DOMAIN, NOT_NEEDED, MemberRuns
from kisystem.ensemble.tiers import members_for, timeout_for
from kisystem.loop.attempt import CHAT_MAX_TOKENS, Attempt, AttemptRunner, Emit
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.models.inventory import Inventory

JUDGES_AT_ONCE = 2  # candidates judged at once while the others still generate
ASK_TASK = "ensemble-ask"


@dataclass(frozen=True)
class Round:
    """One fan-out and its consensus."""

    fanout: FanOut
    consensus: Consensus
    candidates: tuple[Candidate, ...]
    max_tokens_share: float = 1.0
    fallback: bool = False
    ran: dict[Member, float] = field(default_factory=dict)  # seconds each member generated (0: never started)

    @property
    def model_s(self) -> float:
        return sum(member_seconds(a, self.ran) for a in self.fanout.answers)

    @property
    def saved(self) -> int:
        """Members dropped at the early stop."""
        return sum(a.dropped and a.error in (SETTLED_EARLY, NOT_NEEDED) for a in self.fanout.answers)


def member_seconds(answer: MemberAnswer, ran: dict[Member, float]) -> float:
    """A member's model-seconds: its generation time, else how long it generated until it failed or
    was dropped (not the time it waited for its endpoint)."""
    return answer.generation.total_s if answer.generation is not None else ran.get(answer.member, 0.0)


@dataclass(frozen=True)
class EnsembleResult:
    kind: str  # ask / solve
    tier: Tier
    rounds: tuple[Round, ...]
    wall_s: float
    ensemble_id: str
    classification: Classification | None = None
    cached: dict[str, Any] | None = None  # the cached answer's figures, when the answer came from the cache
    cached_answer: str = ""
    target: float | None = None

    @property
    def consensus(self) -> Consensus:
        return self.rounds[-1].consensus if self.rounds else NO_CONSENSUS

    @property
    def answer(self) -> str:
        return self.cached_answer if self.cached is not None else self.consensus.text

    @property
    def chosen(self) -> Candidate | None:
        return self.consensus.chosen

    @property
    def solved(self) -> bool:
        chosen = self.chosen
        return bool(self.target is not None and chosen and chosen.score is not None and chosen.score >= self.target)

    @property
    def fallback(self) -> bool:
        return any(r.fallback for r in self.rounds)

    @property
    def model_s(self) -> float:
        return sum(r.model_s for r in self.rounds)

    def figures(self) -> dict[str, Any]:
        return dict(self.cached) if self.cached is not None else self.consensus.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "ensemble": self.ensemble_id, "tier": str(self.tier),
                "classification": _classification(self.classification), "answer": self.answer,
                "code": self.consensus.code, "consensus": self.figures(), "cached": self.cached is not None,
                "fallback": self.fallback, "solved": self.solved if self.target is not None else None,
                "wall_s": round(self.wall_s, 3), "model_s": round(self.model_s, 3),
                "rounds": [_round_dict(r) for r in self.rounds]}


def _classification(c: Classification | None) -> dict[str, Any] | None:
    return {"tier": str(c.tier), "score": c.score, "reasons": list(c.reasons)} if c else None


def _round_dict(r: Round) -> dict[str, Any]:
    chosen = r.consensus.chosen.answer if r.consensus.chosen else None
    return {"tier": str(r.fanout.tier), "fallback": r.fallback, "timeout_s": r.fanout.timeout_s,
            "wall_s": round(r.fanout.wall_s, 3), "model_s": round(r.model_s, 3),
            "settled_early": r.fanout.settled_early, "max_tokens_share": r.max_tokens_share,
            "members": [_member_dict(a, r.candidates, chosen) for a in r.fanout.answers]}


def _member_dict(a: MemberAnswer, candidates: Sequence[Candidate], chosen: MemberAnswer | None) -> dict[str, Any]:
    judged = next((c for c in candidates if c.answer is a), None)
    return {"model": a.member.model, "sample": a.member.sample, "temperature": a.member.temperature,
            "seconds": round(a.seconds, 3), "ok": a.ok, "dropped": a.dropped, "error": a.error,
            "tokens": a.generation.completion_tokens if a.generation else 0,
            "score": judged.score if judged else None, "chosen": a is chosen}


class _Stoppable:
    """A generator whose calls end at once, with an error, when ``stop`` is set (a candidate passed):
    the fan-out then drops its remaining members."""

    def __init__(self, inner: Generator, stop: asyncio.Event) -> None:
        self.inner = inner
        self.stop = stop

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        if self.stop.is_set():
            raise NotNeeded(NOT_NEEDED)
        call = asyncio.ensure_future(self.inner.generate(request, on_text))
        stopped = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({call, stopped}, return_when=asyncio.FIRST_COMPLETED)
            if call.done():
                return call.result()
            raise NotNeeded(NOT_NEEDED)
        finally:
            for pending in (call, stopped):
                pending.cancel()
            await asyncio.wait({call, stopped})


class _Timed:
    """The generator as the fan-out calls it (once a member holds its endpoint's slot): notes when
    each request started, so that a dropped member's model-seconds leave out its wait."""

    def __init__(self, inner: Generator) -> None:
        self.inner = inner
        self.started: dict[int, float] = {}

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        self.started[id(request)] = asyncio.get_running_loop().time()
        return await self.inner.generate(request, on_text)

    def ran(self, request: GenerationRequest | None, ended: float) -> float:
        started = self.started.get(id(request)) if request is not None else None
        return max(0.0, ended - started) if started is not None else 0.0


class Ensemble:
    """The ensemble over ``models`` (ranked, smallest/fastest first)."""

    def __init__(self, config: OptimizationConfig, inventory: Inventory, generator: Generator, models: Sequence[str],
                 *, store: Any = None, attempts: AttemptRunner | None = None, cache: QueryCache | None = None,
                 probe: BehaviourRunner | None = None, semaphores: EndpointSemaphores | None = None,
                 fresh_seed: int | None = None, early_stop: bool = True) -> None:
        """``store``: the LearningStore the member runs go to (None: not recorded); ``attempts``: the
        loop's judging, for :meth:`solve`; ``probe``: runs candidate code on a prompt's examples;
        ``fresh_seed``: every task member samples (a greedy first sample too) with seed ``fresh_seed +
        sample``, for a turn after the loop, whose greedy and seeded tries these would repeat;
        ``early_stop``: end a task's fan-out at the first candidate reaching the target (else wait for all)."""
        if not models:
            raise ValueError("the ensemble needs at least one model")
        self.config = config
        self.settings = config.ensemble
        self.inventory = inventory
        self.generator = generator
        self.models = tuple(sorted(dict.fromkeys(models), key=lambda m: inventory.model(m).rank))
        self.store = store
        self.attempts = attempts
        self.cache = cache
        self.probe = probe
        self.semaphores = semaphores or EndpointSemaphores.from_settings(self.settings)
        self.fresh_seed = fresh_seed
        self.early_stop = early_stop

    @classmethod
    def for_supervisor(cls, sup: Any, workspaces: Path, *, record: bool = True, cache: bool = True) -> Ensemble:
        """The ensemble over a loop session's models, generator, judging and learning database;
        candidate code for behaviour checks runs under ``workspaces``."""
        settings = sup.config.ensemble
        query_cache = QueryCache(sup.store, settings.cache_max_entries) if cache and settings.cache else None
        return cls(sup.config, sup.inventory, sup.generator, sorted(sup.available or sup.inventory.models),
                   store=sup.store if record else None, attempts=sup.attempts, cache=query_cache,
                   probe=BehaviourRunner(workspaces / "ensemble-probes", sup.attempts.level))

    # -- questions -------------------------------------------------------------------------------

    async def ask(self, prompt: str, tier: Tier | None = None, *, use_cache: bool = True) -> EnsembleResult:
        """The ensemble's answer to ``prompt`` (see the module docstring)."""
        if not prompt.strip():
            raise ValueError("the question is empty")
        started, ensemble_id = _now(), uuid.uuid4().hex[:12]
        classification = None if tier is not None else classify(prompt)
        tier = tier or classification.tier  # type: ignore[union-attr]
        members = members_for(tier, self.models, self.settings)
        key = CacheKey.for_members(prompt, members, tier, {"max_tokens": self.settings.ask_max_tokens})
        use_cache = use_cache and self.cache is not None
        hit = self.cache.get(key) if use_cache else None  # type: ignore[union-attr]
        if hit is not None:
            return EnsembleResult("ask", tier, (), _now() - started, ensemble_id, classification,
                                  cached=hit.figures, cached_answer=hit.answer)
        runs = MemberRuns(self.store, ensemble_id, f"{ASK_TASK}-{key.digest[:12]}", ASK_DOMAIN)
        with _abandoned_on_error(runs):
            rounds = await self._with_fallback(tier, lambda t, m, s, f: self._ask_round(prompt, t, m, s, f, runs),
                                               members)
        result = EnsembleResult("ask", tier, rounds, _now() - started, ensemble_id, classification)
        if use_cache and result.consensus.chosen is not None:
            self.cache.put(key, result.answer, result.consensus.to_dict())  # type: ignore[union-attr]
        return result

    async def _ask_round(self, prompt: str, tier: Tier, members: tuple[Member, ...], share: float, fallback: bool,
                         runs: MemberRuns) -> Round:
        round_no = 2 if fallback else 1
        runs.begin(round_no, members)
        settled = quorum(self.settings.quorum_share, len(members)) if self.settings.quorum_share > 0 else None
        fanout, ran = await self._fan_out(self.generator, tier, members,
                                          lambda m: self._ask_request(prompt, m, share), settled)
        consensus = await agree(prompt, fanout.answers, self.probe)
        candidates = tuple(candidates_of(fanout.answers))
        runs.end(round_no, fanout, consensus, candidates, fallback=fallback)
        return Round(fanout, consensus, candidates, share, fallback, ran)

    def _ask_request(self, prompt: str, member: Member, share: float) -> GenerationRequest:
        spec = self.inventory.model(member.model)
        budget = max(1, int((self.settings.ask_max_tokens or spec.max_tokens or CHAT_MAX_TOKENS) * share))
        sampling = _sampling(member)
        if spec.mode == "completion":
            return GenerationRequest(model=spec.name, mode="completion", prompt=prompt, max_tokens=budget, **sampling)
        return GenerationRequest(model=spec.name, messages=[{"role": "user", "content": prompt}], max_tokens=budget,
                                 **sampling)

    # -- tasks -----------------------------------------------------------------------------------

    async def solve(self, task: TaskSpec, tier: Tier | None = None) -> EnsembleResult:
        """The task through the ensemble, judged in the sandbox (see the module docstring)."""
        if self.attempts is None:
            raise ValueError("solving a task needs the loop's judging (attempts)")
        started, ensemble_id = _now(), uuid.uuid4().hex[:12]
        classification = None if tier is not None else classify(task.prompt, task=task)
        tier = tier or classification.tier  # type: ignore[union-attr]
        run_id = f"ensemble-{ensemble_id}"
        runs = MemberRuns(self.store, ensemble_id, task.id, task.domain, sandbox=str(self.attempts.level),
                          judge=task.judged_by)
        solved = False
        try:
            with _abandoned_on_error(runs):
                async with self.attempts.task_run(task, run_id):
                    rounds = await self.judged_rounds(task, run_id, tier, runs=runs)
            result = EnsembleResult("solve", tier, rounds, _now() - started, ensemble_id, classification,
                                    target=self.target(task))
            solved = result.solved
        finally:
            self.attempts.retire(run_id, solved=solved)
        return result

    def target(self, task: TaskSpec) -> float:
        return float(task.target_score if task.target_score is not None else self.config.target_score)

    def task_models(self, task: TaskSpec) -> tuple[str, ...]:
        """The models for a task: its route's, in the route's order, where the ensemble has them; else all."""
        route = self.inventory.routes.get(task.domain)
        chain = [m for m in (route.chain if route else ()) if m in self.models]
        return tuple(chain) or self.models

    async def judged_rounds(self, task: TaskSpec, run_id: str, tier: Tier, *, runs: MemberRuns | None = None,
                            emit: Callable[[Member], Emit] | None = None, first_attempt: int = 1,
                            models: Sequence[str] | None = None) -> tuple[Round, ...]:
        """The rounds of a task inside an open ``attempts.task_run(task, run_id)`` (the loop's too):
        candidates judged in workspaces numbered from ``first_attempt``; ``emit(member)`` gives the
        judging events' destination (else the member's run); ``models``: the fleet to size the tier
        from (default: the task's route models)."""
        runs = runs or MemberRuns(None, "", task.id, task.domain)
        models = tuple(models) if models is not None else self.task_models(task)
        numbers = iter(range(first_attempt, first_attempt + 10_000))

        async def one(tier: Tier, members: tuple[Member, ...], share: float, fallback: bool) -> Round:
            round_no = 2 if fallback else 1
            runs.begin(round_no, members)
            destination = emit or (lambda m: runs.emit_for(round_no, m))
            r = await self._judged_round(task, run_id, tier, members, share, fallback, numbers, destination)
            runs.end(round_no, r.fanout, r.consensus, r.candidates, fallback=fallback, target=self.target(task))
            return r

        return await self._with_fallback(tier, one, members_for(tier, models, self.settings), models)

    async def _judged_round(self, task: TaskSpec, run_id: str, tier: Tier, members: tuple[Member, ...],
                            share: float, fallback: bool, numbers: Any, emit: Callable[[Member], Emit]) -> Round:
        assert self.attempts is not None
        stop, requests, judged = asyncio.Event(), {}, {}
        slots = asyncio.Semaphore(JUDGES_AT_ONCE)
        target = self.target(task)

        def request_for(member: Member) -> GenerationRequest:
            requests[member] = self._task_request(task, member, share)
            return requests[member]

        async def judge(answer: MemberAnswer, number: int) -> None:
            spec = self.inventory.model(answer.member.model)
            async with slots:
                attempt = await self.attempts.run(task, run_id, number, spec.name, spec.mode, requests[answer.member],
                                                  answer.generation, emit(answer.member))  # type: ignore[arg-type]
            judged[id(answer)] = attempt
            if attempt.score >= target:
                stop.set()

        tasks: list[asyncio.Task[None]] = []

        def on_answer(answer: MemberAnswer) -> None:  # judged at once, while the others still generate
            if answer.ok:
                tasks.append(asyncio.ensure_future(judge(answer, next(numbers))))

        try:
            generator = _Stoppable(self.generator, stop) if self.early_stop else self.generator
            fanout, ran = await self._fan_out(generator, tier, members, request_for,
                                              (lambda _: stop.is_set()) if self.early_stop else None, on_answer)
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        fanout = _stopped(fanout)
        candidates = tuple(_judged(a, judged[id(a)]) for a in fanout.answers if id(a) in judged)
        return Round(fanout, by_tests(candidates, task.language), candidates, share, fallback, ran)

    def _task_request(self, task: TaskSpec, member: Member, share: float) -> GenerationRequest:
        """The loop's own request for a first try (so that a sample's answer is the loop's, and the
        benchmarks' answer cache holds it), sampled at the member's temperature."""
        assert self.attempts is not None
        spec = self.inventory.model(member.model)
        request = self.attempts.request_for(task, spec.name, spec.mode, None, member.sample, spec.max_tokens)
        sampled = {"temperature": member.temperature, "seed": member.sample} if member.temperature > 0 else {}
        if self.fresh_seed is not None:
            sampled = {"temperature": member.temperature or self.settings.sample_temperature,
                       "seed": self.fresh_seed + member.sample}
        return replace(request, max_tokens=max(1, int(request.max_tokens * share)), **sampled)

    # -- shared ----------------------------------------------------------------------------------

    async def _with_fallback(self, tier: Tier, round_of: Callable[..., Any], members: tuple[Member, ...],
                             models: Sequence[str] | None = None) -> tuple[Round, ...]:
        """The tier's round, and once more the tier below at a reduced budget when it brought no valid answer."""
        first = await round_of(tier, members, 1.0, False)
        if first.candidates:
            return (first,)
        below = tier.below or Tier.SIMPLE
        share = self.settings.fallback_max_tokens_share
        second = await round_of(below, members_for(below, models or self.models, self.settings), share, True)
        return first, second

    async def _fan_out(self, generator: Generator, tier: Tier, members: tuple[Member, ...],
                       request_for: Callable[[Member], GenerationRequest], settled: Settled | None,
                       on_answer: Callable[[MemberAnswer], Any] | None = None) -> tuple[FanOut, dict[Member, float]]:
        """The fan-out, and how long each member generated (from when it got its endpoint)."""
        timed, requests = _Timed(generator), {}

        def asked(member: Member) -> GenerationRequest:
            requests[member] = request_for(member)
            return requests[member]

        start = asyncio.get_running_loop().time()
        fanout = await fan_out(timed, members, asked, tier, timeout_for(tier, self.settings),
                               endpoint_of=lambda m: self.inventory.model(m).endpoint, semaphores=self.semaphores,
                               settled=settled, on_answer=on_answer)
        return fanout, {a.member: timed.ran(requests.get(a.member), start + a.seconds) for a in fanout.answers}


def _now() -> float:
    """The event loop's clock (virtual in tests), which the fan-out's times come from too."""
    return asyncio.get_running_loop().time()


def _sampling(member: Member) -> dict[str, Any]:
    return {"temperature": member.temperature, "seed": member.sample} if member.temperature > 0 else {}


def _judged(answer: MemberAnswer, attempt: Attempt) -> Candidate:
    """``passed``: every test passed (candidates that pass behave alike on the tests)."""
    return Candidate(answer, attempt.code, attempt.score, attempt.failure is None, attempt)


def _stopped(fanout: FanOut) -> FanOut:
    """Members ended by the early stop (a candidate passed) count as dropped, not failed."""
    answers = tuple(replace(a, dropped=True) if a.error == NOT_NEEDED else a for a in fanout.answers)
    early = fanout.settled_early or any(a.error == NOT_NEEDED for a in answers)
    return replace(fanout, answers=answers, settled_early=early)


@contextlib.contextmanager
def _abandoned_on_error(runs: MemberRuns) -> Iterator[None]:
    """The member runs still open are marked interrupted when the ensemble fails or is cancelled."""
    try:
        yield
    except BaseException as err:
        runs.abandon(f"the ensemble ended: {type(err).__name__}: {err}"[:300])
        raise

