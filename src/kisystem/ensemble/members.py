"""The ensemble's shared vocabulary: tiers, members, their answers and a fan-out's result.

The fan-out (:mod:`kisystem.ensemble.fanout`) produces :class:`FanOut`; the consensus
(:mod:`kisystem.ensemble.consensus`) reads it.  Neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from kisystem.models.base import Generation, GenerationRequest, OnText


class Tier(StrEnum):
    SIMPLE = "simple"
    MEDIUM = "medium"
    COMPLEX = "complex"
    EXPERT = "expert"

    @property
    def below(self) -> Tier | None:
        """The next simpler tier (the fallback's), None for SIMPLE."""
        order = list(Tier)
        i = order.index(self)
        return order[i - 1] if i else None


@dataclass(frozen=True)
class Member:
    """One generation of the ensemble: a model and a sample number (temperature > 0 when sample > 0
    or when the model appears more than once)."""

    model: str
    sample: int = 0
    temperature: float = 0.0


@dataclass(frozen=True)
class MemberAnswer:
    member: Member
    generation: Generation | None  # None when it failed or was dropped
    seconds: float  # from the fan-out's start to this member's end (or its drop)
    error: str | None = None  # why there is no answer ("timeout after 30 s", the backend's error)
    dropped: bool = False  # still running at the tier timeout or at the early stop: cancelled

    @property
    def ok(self) -> bool:
        return self.generation is not None and bool(self.generation.text.strip())

    @property
    def text(self) -> str:
        return self.generation.text if self.generation is not None else ""


@dataclass(frozen=True)
class FanOut:
    tier: Tier
    members: tuple[Member, ...]
    answers: tuple[MemberAnswer, ...]  # one per member, in the order they ended
    wall_s: float
    settled_early: bool = False  # the ``settled`` callback stopped it before every member ended
    timeout_s: float = 0.0

    @property
    def valid(self) -> list[MemberAnswer]:
        return [a for a in self.answers if a.ok]


class NotNeeded(Exception):
    """Raised by a generator to end a member on purpose (the question was settled without it): the
    fan-out records the member as dropped, not failed."""


class Generator(Protocol):
    """What the fan-out asks: kisystem's ModelClient / ResilientClient."""

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation: ...


RequestFor = Callable[[Member], GenerationRequest]
Settled = Callable[[Sequence[MemberAnswer]], bool]  # True once the answers so far settle the question
