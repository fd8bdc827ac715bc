"""The durable, cost-aware task queue (DESIGN decision 6).

``kisystem.store.queue`` holds the queue's SQL (states, leases, transitions, answers);
``ordering`` decides which task runs next (PriorityEff = PriorityScore / ETA);
``answers`` replays stored model answers after a crash; ``runner`` claims and runs tasks.
"""

from kisystem.queue.answers import CachingGenerator, request_key
from kisystem.queue.ordering import (
    EtaEstimator,
    Ordering,
    PriorityScores,
    learned_ordering,
    start_models,
    static_eta,
)
from kisystem.queue.runner import (
    KILL_POINTS,
    BackendGate,
    QueueEvent,
    QueueRunner,
    RunnerSettings,
    RunSummary,
    derive_supervisor,
)

__all__ = [
    "KILL_POINTS",
    "BackendGate",
    "CachingGenerator",
    "EtaEstimator",
    "Ordering",
    "PriorityScores",
    "QueueEvent",
    "QueueRunner",
    "RunSummary",
    "RunnerSettings",
    "derive_supervisor",
    "learned_ordering",
    "request_key",
    "start_models",
    "static_eta",
]
