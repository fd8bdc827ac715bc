"""Stop-loss routing along a domain's escalation chain (DESIGN decision 3).

A task starts at the domain's start model (or a stronger override), stays on a model
until it has failed ``stoploss`` times (the model's own, where its inventory entry sets
one), then moves one step forward along the chain;
it never moves back and uses each model at most once.  After the last model the task
is ``exhausted``.  An error of severity >= 4, or the same error signature three times
in a row on one model (stuck), escalates at once; an unrecoverable error aborts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Mapping, Protocol, Sequence

STUCK_REPEATS = 3
ESCALATE_SEVERITY = 4


class Decision(StrEnum):
    CONTINUE = "continue"  # same model, next iteration
    ESCALATE = "escalate"  # next model in the chain
    EXHAUSTED = "exhausted"  # no model left
    ABORT = "abort"  # unrecoverable: no model can fix this


class FailureInfo(Protocol):
    severity: int
    recoverable: bool
    signature: str


def build_chain(chain: Sequence[str], available: set[str] | None = None, start: str | None = None) -> tuple[str, ...]:
    """The models a task may use, in order.

    ``start`` (an explicit model, a meta-supervisor bias or a capability floor) replaces
    the start: the chain begins there and goes on with the models after it.  A start
    outside the chain runs first, then the whole chain.  Models the backend lacks are
    dropped (the caller warns).
    """
    order = list(dict.fromkeys(chain))
    if start is not None:
        order = order[order.index(start):] if start in order else [start, *order]
    if available is not None:
        order = [m for m in order if m in available]
    return tuple(order)


@dataclass
class StopLossRouter:
    chain: tuple[str, ...]
    stoploss: int
    per_model: Mapping[str, int] = field(default_factory=dict)  # a model's own stop-loss, where it has one
    index: int = 0
    fails: int = 0
    tried: list[str] = field(default_factory=list)
    _streak: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.chain:
            raise ValueError("no model available for this task's route")
        self.tried.append(self.chain[0])

    @property
    def current(self) -> str:
        return self.chain[self.index]

    def record_failure(self, info: FailureInfo) -> Decision:
        """Count one failed iteration of the current model and decide what comes next."""
        if not info.recoverable:
            return Decision.ABORT
        self.fails += 1
        self._streak = [*self._streak[-(STUCK_REPEATS - 1):], info.signature]
        stuck = len(self._streak) == STUCK_REPEATS and len(set(self._streak)) == 1
        limit = self.per_model.get(self.current, self.stoploss)
        if info.severity >= ESCALATE_SEVERITY or self.fails >= limit or stuck:
            return self.escalate()
        return Decision.CONTINUE

    def raise_to(self, index: int) -> Decision:
        """Jump forward to ``index`` (a capability floor); never backwards."""
        if index <= self.index:
            return Decision.CONTINUE
        self.index = min(index, len(self.chain) - 1) - 1
        return self.escalate()

    def escalate(self) -> Decision:
        """Move to the next model, or report that the chain is exhausted."""
        if self.index + 1 >= len(self.chain):
            return Decision.EXHAUSTED
        self.index += 1
        self.fails = 0
        self._streak = []
        self.tried.append(self.current)
        return Decision.ESCALATE
