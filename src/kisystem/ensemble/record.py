"""The ensemble in the learning database: a run per member, the chosen answer, the consensus figures.

Every member's generation is one run (``LearningStore.start_run`` when the member is asked,
``finish_run`` once the consensus is known), under the member's model, so that the models'
response rates and times land where health and the meta-supervisor read them:

- ``success``: a task's candidate reaching the target score; a question's answer in the
  chosen cluster (the ensemble's best ground truth without tests);
- ``failed``: no answer (a backend error, the tier timeout, an empty answer; phase
  GENERATE), a candidate under the target (the judge's phase and error type), or a
  question's answer outside the chosen cluster (LOGIC, "outvoted");
- ``aborted``: dropped at the early stop: not needed, and no evidence about the model.

A question's runs use the domain :data:`ASK_DOMAIN`; a task's runs its own domain and id.
Each run gets an ``ensemble`` event (the ensemble id, tier, round, the member's sample,
seconds and whether its answer was chosen or agreed) and the chosen member's run a
``consensus`` event with the answer and the consensus figures.  A task's judging events
(answer, build, test, score) go to the member's run as they happen.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kisystem.ensemble.consensus import Candidate, Consensus
from kisystem.ensemble.fanout import SETTLED_EARLY
from kisystem.ensemble.members import FanOut, Member, MemberAnswer, Tier
from kisystem.store.learning import LearningStore, RunResult

ASK_DOMAIN = "Ensemble/Ask"
ANSWER_CHARS = 4000  # of the chosen answer kept in its consensus event
NOT_NEEDED = "not needed: a candidate passed"  # the early stop of a task (kisystem.ensemble.ensemble)
EARLY = (SETTLED_EARLY, NOT_NEEDED)


@dataclass(frozen=True)
class Verdict:
    """How one member's run ends."""

    outcome: str
    reason: str
    score: float | None = None
    phase: str | None = None
    error_type: str | None = None
    t_build: float = 0.0
    t_test: float = 0.0


def verdict(answer: MemberAnswer, candidate: Candidate | None, consensus: Consensus, target: float | None) -> Verdict:
    """The outcome of a member: by its judged score where there was a task (``target``), else by
    whether its answer is in the chosen cluster."""
    if answer.dropped and answer.error in EARLY:
        return Verdict("aborted", answer.error or "dropped")
    if candidate is None:
        return Verdict("failed", answer.error or "empty answer", phase="GENERATE", error_type="RUNTIME")
    attempt = candidate.attempt
    if target is not None and attempt is not None:
        if attempt.score >= target:
            return Verdict("success", f"score {attempt.score:.0f} >= target {target:g}", attempt.score,
                           t_build=attempt.t_build, t_test=attempt.t_test)
        failure = attempt.failure
        return Verdict("failed", failure.hint if failure else f"score {attempt.score:.0f} < target {target:g}",
                       attempt.score, failure.phase if failure else None, failure.error_type if failure else None,
                       attempt.t_build, attempt.t_test)
    if any(c.answer is answer for c in consensus.agreeing):
        return Verdict("success", f"in the consensus ({consensus.method})")
    return Verdict("failed", f"outvoted: not in the consensus ({consensus.method})", error_type="LOGIC")


class MemberRuns:
    """The runs of one ensemble's members (nothing is written without a store)."""

    def __init__(self, store: LearningStore | None, ensemble_id: str, task: str, domain: str, *,
                 sandbox: str | None = None, judge: str | None = None) -> None:
        self.store = store
        self.ensemble_id = ensemble_id
        self.task = task
        self.domain = domain
        self.sandbox = sandbox
        self.judge = judge
        self.runs: dict[tuple[int, Member], str] = {}
        self._open: set[str] = set()

    def begin(self, round_no: int, members: Sequence[Member]) -> None:
        if self.store is None:
            return
        for member in members:
            run_id = self.store.start_run(self.task, self.domain, member.model,
                                          sandbox=self.sandbox, judge=self.judge)  # type: ignore[arg-type]
            self.runs[(round_no, member)] = run_id
            self._open.add(run_id)

    def emit_for(self, round_no: int, member: Member) -> Callable[..., None]:
        """The judging events of a member's candidate, onto its run."""
        run_id = self.runs.get((round_no, member))

        def emit(kind: str, persist: bool = True, **data: Any) -> None:
            if self.store is not None and run_id is not None and persist:
                self.store.append_event(run_id, kind, {"iteration": 1, "model": member.model, **data})

        return emit

    def end(self, round_no: int, fanout: FanOut, consensus: Consensus, candidates: Sequence[Candidate], *,
            fallback: bool, target: float | None = None) -> None:
        """Finish the round's runs with their verdicts and the consensus figures."""
        if self.store is None:
            return
        by_answer = {id(c.answer): c for c in candidates}
        figures = consensus.to_dict()
        for answer in fanout.answers:
            run_id = self.runs.get((round_no, answer.member))
            if run_id is None or run_id not in self._open:
                continue
            self._finish(run_id, answer, by_answer.get(id(answer)), consensus, figures, fanout.tier, round_no,
                         fallback, target)

    def abandon(self, reason: str) -> None:
        """Mark every run still open interrupted (the ensemble was cancelled or crashed)."""
        if self.store is None:
            return
        for run_id in sorted(self._open):
            self.store.interrupt_run(run_id, reason)
        self._open.clear()

    def _finish(self, run_id: str, answer: MemberAnswer, candidate: Candidate | None, consensus: Consensus,
                figures: dict[str, Any], tier: Tier, round_no: int, fallback: bool, target: float | None) -> None:
        assert self.store is not None
        chosen = consensus.chosen is not None and consensus.chosen.answer is answer
        agreed = any(c.answer is answer for c in consensus.agreeing)
        member = answer.member
        self.store.append_event(run_id, "ensemble", {
            "ensemble": self.ensemble_id, "tier": str(tier), "round": round_no, "fallback": fallback,
            "sample": member.sample, "temperature": member.temperature, "seconds": round(answer.seconds, 3),
            "dropped": answer.dropped, "error": answer.error, "chosen": chosen, "agreed": agreed,
            "method": figures["method"], "confidence": figures["confidence"], "agreement": figures["agreement"]})
        if chosen:
            self.store.append_event(run_id, "consensus", {**figures, "ensemble": self.ensemble_id,
                                                          "answer": consensus.text[:ANSWER_CHARS]})
        v = verdict(answer, candidate, consensus, target)
        generation = answer.generation
        self.store.finish_run(run_id, RunResult(
            model=member.model, iter=1, score_final=v.score, outcome=v.outcome, phase=v.phase,  # type: ignore[arg-type]
            reason=v.reason, t_build=v.t_build, t_test=v.t_test, error_type=v.error_type,  # type: ignore[arg-type]
            tokens_prompt=generation.prompt_tokens if generation else 0,
            tokens_completion=generation.completion_tokens if generation else 0,
            models_tried=(member.model,), wall_s=answer.seconds))
        self._open.discard(run_id)
