"""A feedback loop over a real learning database, with a clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kisystem.config import FeedbackSettings
from kisystem.improve.feedback import FeedbackLoop
from kisystem.store.learning import LearningStore

T0 = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = T0
    step: timedelta = field(default=timedelta(minutes=1))

    def __call__(self) -> datetime:
        self.now += self.step  # every entry a minute after the last: a stable order
        return self.now


def open_loop(path: Path, clock: Clock | None = None, **settings) -> tuple[LearningStore, FeedbackLoop]:
    store = LearningStore.open(path)
    return store, FeedbackLoop(store, replace(FeedbackSettings(), **settings), clock=clock or Clock())
