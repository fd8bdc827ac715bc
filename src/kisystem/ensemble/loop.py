"""The ensemble as a generation strategy of the loop (``ensemble.in_loop``, off by default).

- ``after_exhausted``: when the chain's last model hit its stop-loss, the task gets one
  ensemble turn instead of ending ``exhausted`` at once: the tier's members answer the plain
  task prompt at once, every candidate is judged like a loop iteration, the fan-out stops at
  the first candidate reaching the target, and the best score wins.  Solved, the run ends
  ``success`` on the winning model; else it stays ``exhausted``.
- ``complex``: a task classified at least ``in_loop_tier`` starts with an ensemble turn; the
  chain runs as usual when the turn did not solve it.

A turn asks the task's tier, at least ``in_loop_tier``, over the task's route models (with
samples, so that a small fleet still fans out).  It is one iteration of the run: its
candidates are judged in workspaces ``attempt-1000`` on (every member samples, seeds 1000 on: a
greedy or low-seeded answer would repeat one of the chain's tries), their generation, build and test
events go to the run's log with their model, an ``ensemble`` event holds the consensus
figures, and their times and tokens count in the run's totals.  Off by default: a turn
costs a fan-out over the fleet for every task it applies to, and changes what a run of the
loop measures.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from kisystem.ensemble.classifier import classify
from kisystem.ensemble.members import Member, Tier

if TYPE_CHECKING:
    from kisystem.ensemble.ensemble import Ensemble, Round
    from kisystem.loop.router import StopLossRouter
    from kisystem.loop.supervisor import Supervisor
    from kisystem.loop.taskspec import TaskSpec

ENSEMBLE_ATTEMPTS = 1000  # the first workspace number of a turn's candidates (the chain's are 1, 2, ...)
Iterate = Callable[..., Awaitable[tuple[str, str, int]]]
TIERS = list(Tier)


def in_loop_strategy(config: Any) -> EnsembleTurn | None:
    """The configured strategy, or None when ``ensemble.in_loop`` is off."""
    settings = getattr(config, "ensemble", None)
    if settings is None or settings.in_loop == "off":
        return None
    return EnsembleTurn(settings.in_loop, Tier(settings.in_loop_tier))


def at_least(tier: Tier, floor: Tier) -> Tier:
    return max(tier, floor, key=TIERS.index)


class EnsembleTurn:
    def __init__(self, mode: str, min_tier: Tier, make: Callable[[Supervisor], Ensemble] | None = None) -> None:
        """``make(sup)``: the ensemble of a supervisor (default: its generator, models and judging)."""
        if mode not in ("after_exhausted", "complex"):
            raise ValueError(f"unknown in-loop ensemble mode {mode!r}")
        self.mode = mode
        self.min_tier = min_tier
        self.make = make or _ensemble_of

    async def around(self, sup: Supervisor, iterate: Iterate, task: TaskSpec, run_id: str, router: StopLossRouter,
                     tally: Any) -> tuple[str, str, int]:
        """The chain's iterations (``iterate``) with the ensemble's turn before or after them."""
        tier = classify(task.prompt, task=task).tier
        if self.mode == "complex" and TIERS.index(tier) >= TIERS.index(self.min_tier):
            solved, note = await self.turn(sup, task, run_id, tally, 0, tier)  # iteration 0: before the chain
            if solved:
                return "success", note, 1
            outcome, reason, iterations = await iterate(task, run_id, router, tally)
            return outcome, reason, iterations + 1
        outcome, reason, iterations = await iterate(task, run_id, router, tally)
        if self.mode != "after_exhausted" or outcome != "exhausted":
            return outcome, reason, iterations
        solved, note = await self.turn(sup, task, run_id, tally, iterations + 1, at_least(tier, self.min_tier))
        return ("success" if solved else outcome), (note if solved else f"{reason}; {note}"), iterations + 1

    async def turn(self, sup: Supervisor, task: TaskSpec, run_id: str, tally: Any, iteration: int,
                   tier: Tier) -> tuple[bool, str]:
        """One ensemble turn; (solved, what happened)."""
        ensemble = self.make(sup)
        tier = at_least(tier, self.min_tier)

        def emit(member: Member) -> Callable[..., None]:
            return lambda kind, **data: sup._emit(kind, task, run_id, iteration, member.model, **data)

        rounds = await ensemble.judged_rounds(task, run_id, tier, emit=emit, first_attempt=ENSEMBLE_ATTEMPTS)
        last = rounds[-1]
        for r in rounds:
            _count(tally, r)
        chosen = last.consensus.chosen
        target = ensemble.target(task)
        solved = bool(chosen and chosen.score is not None and chosen.score >= target)
        members = sum(len(r.fanout.members) for r in rounds)
        sup._emit("ensemble", task, run_id, iteration, chosen.model if chosen else "ensemble", tier=str(tier),
                  members=members, fallback=len(rounds) > 1, settled_early=last.fanout.settled_early,
                  wall_s=round(sum(r.fanout.wall_s for r in rounds), 3),
                  model_s=round(sum(r.model_s for r in rounds), 3),
                  consensus=last.consensus.to_dict())
        best = f"best score {chosen.score:.0f} by {chosen.model}" if chosen else "no valid answer"
        return solved, f"the ensemble ({tier}, {members} members): {best}" + (
            f" >= target {target:g}" if solved else "")


def _count(tally: Any, r: Round) -> None:
    """The round's judged candidates into the run's totals, the chosen one last (the run's last attempt)."""
    chosen = r.consensus.chosen
    for c in sorted(r.candidates, key=lambda c: c is chosen):
        if c.attempt is not None:
            tally.add(c.attempt)


def _ensemble_of(sup: Supervisor) -> Ensemble:
    from kisystem.ensemble.ensemble import Ensemble

    return Ensemble(sup.config, sup.inventory, sup.generator, sorted(sup.available or sup.inventory.models),
                    attempts=sup.attempts, fresh_seed=ENSEMBLE_ATTEMPTS)
