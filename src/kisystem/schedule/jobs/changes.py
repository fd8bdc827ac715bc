"""Two plan changes the token budget review proposes: a model's answer budget and its context.

Neither can be applied by a configuration version yet: the overlay
(:mod:`kisystem.improve.overlay`) tunes a model's stop-loss and timeout only, and the loop's
answer budget is a constant (``kisystem.loop.attempt.CHAT_MAX_TOKENS``).  So their
``apply`` refuses in one line (an approved plan is then rolled back as "cannot apply"), and
the review stores such plans as ``awaiting_approval``: no replay of recorded answers can
show what a longer answer would have been, a person decides.

They are registered in :data:`kisystem.improve.plans.CHANGE_TYPES` when this module is
imported, so that a stored plan reads back in this process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kisystem.improve import plans
from kisystem.improve.overlay import Overlay, OverlayError
from kisystem.models.inventory import Inventory

NOT_YET = ("configuration versions cannot set a model's {what} yet; set it by hand ({where}) or wait for "
           "overlay support")


@dataclass(frozen=True)
class SetMaxTokens:
    """The largest answer, in tokens, the loop asks ``model`` for."""

    model: str
    n: int
    kind: ClassVar[str] = "set_max_tokens"

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        raise OverlayError(NOT_YET.format(what="max_tokens", where="kisystem.loop.attempt.CHAT_MAX_TOKENS"))

    def describe(self) -> str:
        return f"max_tokens of {self.model}: {self.n}"


@dataclass(frozen=True)
class SetContextTokens:
    """The context (num_ctx: prompt plus answer) ``model`` is served and checked with."""

    model: str
    n: int
    kind: ClassVar[str] = "set_num_ctx"

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        raise OverlayError(NOT_YET.format(what="num_ctx", where="the inventory's context_tokens"))

    def describe(self) -> str:
        return f"num_ctx of {self.model}: {self.n}"


for _change in (SetMaxTokens, SetContextTokens):
    plans.CHANGE_TYPES.setdefault(_change.kind, _change)
