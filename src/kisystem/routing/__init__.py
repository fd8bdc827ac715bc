"""Learned routing: the meta-supervisor (priorities, model bias) and the hybrid decision.

Both read the learning database only; the stop-loss router itself is ``kisystem.loop.router``.
"""

from kisystem.routing.complexity import complexity
from kisystem.routing.hybrid import (
    HybridDecision,
    HybridScore,
    apply_floor,
    band,
    combine,
    failure_state,
    floor_index,
    floor_model,
)
from kisystem.routing.meta import (
    MetaSupervisor,
    PriorityFactors,
    PriorityInputs,
    UnknownDomain,
    best_models,
    explain,
    priority,
    priority_factors,
    recency_boost,
    replay_statistics,
)

__all__ = [
    "HybridDecision",
    "HybridScore",
    "MetaSupervisor",
    "PriorityFactors",
    "PriorityInputs",
    "UnknownDomain",
    "apply_floor",
    "band",
    "best_models",
    "combine",
    "complexity",
    "explain",
    "failure_state",
    "floor_index",
    "floor_model",
    "priority",
    "priority_factors",
    "recency_boost",
    "replay_statistics",
]
