"""The learning database: every run kisystem makes, and what the meta-supervisor learns from.

:class:`LearningStore` is the only code that speaks SQL; ``db`` holds the connection
settings and ``migrations`` the numbered schema steps applied when a store opens.
"""

from kisystem.store.learning import (
    ERROR_OUTCOMES,
    FINAL_OUTCOMES,
    OUTCOMES,
    DomainStats,
    ErrorType,
    LearningStore,
    ModelOutcome,
    ModelStats,
    Outcome,
    Phase,
    RunAlreadyFinished,
    RunEvent,
    RunRecord,
    RunResult,
    Sandbox,
)
from kisystem.store.migrations import LATEST_VERSION, MIGRATIONS, Migration

__all__ = [
    "ERROR_OUTCOMES",
    "FINAL_OUTCOMES",
    "LATEST_VERSION",
    "MIGRATIONS",
    "OUTCOMES",
    "DomainStats",
    "ErrorType",
    "LearningStore",
    "Migration",
    "ModelOutcome",
    "ModelStats",
    "Outcome",
    "Phase",
    "RunAlreadyFinished",
    "RunEvent",
    "RunRecord",
    "RunResult",
    "Sandbox",
]
