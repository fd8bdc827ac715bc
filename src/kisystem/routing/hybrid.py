"""Hybrid decision: a capability floor from meta bias, complexity and failure state (seed B §3).

    score = w_meta * meta_bias + w_complexity * complexity + w_failure * failure_state

with the weights from config (0.40 / 0.30 / 0.30).  The meta-bias score is the
recommended model's confidence (its weighted success rate), 0.5 without a
recommendation; the failure-state score is 0.5 + min(0.3, 0.1 * retries) plus 0 / 0.1
/ 0.2 / 0.15 for a COMPILATION / RUNTIME / PERFORMANCE / LOGIC error and 0.1 for any
other error; with no error yet it adds nothing.  The score falls in one of four bands
(< 0.4, < 0.6, < 0.8, >= 0.8) naming a capability floor on the task's chain: "simple"
and "medium" set no floor (a domain's route already starts at the model the seeds chose
for ordinary tasks, and a task with no history scores a neutral 0.5), "complex" the
middle of the chain (position ceil((len - 1) / 2)) and "very complex" its last model.
DESIGN decision 3 lets that floor raise the model along the chain, never lower it
(:func:`apply_floor`).  On the guide's ladder (mistral, coder-v2, qwen-coder, r1) this
gives its picks for the complex and very complex bands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kisystem.config import HybridDecisionWeights
from kisystem.routing.complexity import complexity, task_text

if TYPE_CHECKING:
    from kisystem.loop.taskspec import TaskSpec
    from kisystem.routing.meta import MetaSupervisor

NEUTRAL_META = 0.5
BAND_EDGES = (0.4, 0.6, 0.8)
BAND_NAMES = ("simple", "medium", "complex", "very complex")
ERROR_FACTORS = {"COMPILATION": 0.0, "RUNTIME": 0.1, "PERFORMANCE": 0.2, "LOGIC": 0.15}
OTHER_ERROR = 0.1


@dataclass(frozen=True)
class HybridScore:
    meta_bias: float
    complexity: float
    failure_state: float
    score: float

    @property
    def band(self) -> int:
        return band(self.score)

    @property
    def band_name(self) -> str:
        return BAND_NAMES[self.band]


def failure_state(retry: int, error_type: object | None = None) -> float:
    """The guide's failure-state score; ``error_type`` may be a str or an enum member."""
    if error_type is None:
        factor = 0.0
    else:
        factor = ERROR_FACTORS.get(str(getattr(error_type, "value", error_type)), OTHER_ERROR)
    return min(1.0, 0.5 + min(0.3, 0.1 * max(0, retry)) + factor)


def combine(meta_bias: float, complexity_score: float, failure: float,
            weights: HybridDecisionWeights = HybridDecisionWeights()) -> float:  # fmt: skip
    return weights.meta_bias * meta_bias + weights.complexity * complexity_score + weights.failure_state * failure


def band(score: float) -> int:
    """0..3 for the bands < 0.4, < 0.6, < 0.8, >= 0.8."""
    return sum(score >= edge for edge in BAND_EDGES)


def floor_index(chain_length: int, score: float) -> int:
    """The chain position the score's band names (see the module docstring)."""
    if chain_length <= 0:
        raise ValueError("an empty chain has no floor")
    last = chain_length - 1
    return {0: 0, 1: 0, 2: math.ceil(last / 2), 3: last}[band(score)]


def floor_model(chain: Sequence[str], score: float) -> str:
    return chain[floor_index(len(chain), score)]


def apply_floor(current_index: int, chain: Sequence[str], score: float) -> int:
    """The index to run at: the current one, or the floor when that is further along."""
    return max(current_index, floor_index(len(chain), score))


class HybridDecision:
    """Scores a task; ``meta=None`` (or a disabled supervisor) gives the neutral meta score."""

    def __init__(self, meta: MetaSupervisor | None, weights: HybridDecisionWeights | None = None) -> None:
        self._meta = meta
        self._weights = weights or HybridDecisionWeights()

    def meta_score(self, domain: str) -> float:
        """The confidence of the domain's recommended model, or 0.5 without a recommendation."""
        if self._meta is None:
            return NEUTRAL_META
        recommended = self._meta.recommend_model_bias().get(domain)
        return self._meta.confidence(domain, recommended) if recommended else NEUTRAL_META

    def evaluate(self, domain: str, language: str, text: str, retry: int = 0,
                 error_type: object | None = None) -> HybridScore:  # fmt: skip
        meta = self.meta_score(domain)
        comp = complexity(text, language, domain)
        fail = failure_state(retry, error_type)
        return HybridScore(meta, comp, fail, combine(meta, comp, fail, self._weights))

    def evaluate_task(self, task: TaskSpec, retry: int = 0, error_type: object | None = None) -> HybridScore:
        """:meth:`evaluate` on the task's prompt and starter files."""
        text = task_text(task.prompt, tuple(task.starter.values()))
        return self.evaluate(task.domain, task.language, text, retry, error_type)


class HybridFloor:
    """The supervisor's capability floor: where a task must be after ``retry`` failures."""

    def __init__(self, decision: HybridDecision) -> None:
        self.decision = decision

    def floor(self, task: TaskSpec, chain: Sequence[str], index: int, retry: int, error_type: str) -> int:
        return apply_floor(index, chain, self.decision.evaluate_task(task, retry, error_type).score)
