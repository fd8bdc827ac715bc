"""Generation latency and tokens per model, folded forward from the loop's ``answer`` events.

``run_events`` is append-only and its ids only grow, so a fold that remembers the last id it read
needs to read only the events written since: a Prometheus scrape every 15 s costs a range scan of
the newest rows, not a pass over every event the database ever logged.  The sums are what the loop
recorded, so the histograms behave as Prometheus counters (they only grow).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

from prometheus_client.utils import floatToGoString

from kisystem.web.db import DashboardDb

SECONDS_BUCKETS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
TOKEN_BUCKETS: tuple[float, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

_NEW_ANSWERS = """
SELECT json_extract(payload, '$.model'), json_extract(payload, '$.seconds'),
       json_extract(payload, '$.completion_tokens')
FROM run_events WHERE id > ? AND id <= ? AND kind = 'answer'
"""


@dataclass
class Histogram:
    """Observations in fixed buckets (upper bounds), with their count and sum."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    count: int = 0
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * len(self.bounds)

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += 1
                break

    def cumulative(self) -> list[tuple[str, int]]:
        """(le, observations <= le) per bucket and ``+Inf``, ``le`` written as prometheus_client writes it."""
        out, running = [], 0
        for bound, n in zip(self.bounds, self.counts, strict=True):
            running += n
            out.append((floatToGoString(bound), running))
        return [*out, ("+Inf", self.count)]


@dataclass
class ModelAnswers:
    seconds: Histogram = field(default_factory=lambda: Histogram(SECONDS_BUCKETS))
    tokens: Histogram = field(default_factory=lambda: Histogram(TOKEN_BUCKETS))


class AnswerFold:
    """Per-model histograms of every ``answer`` event up to the newest one read."""

    def __init__(self) -> None:
        self.last_id = 0
        self.models: dict[str, ModelAnswers] = {}
        self._lock = threading.Lock()

    def update(self, db: DashboardDb) -> dict[str, ModelAnswers]:
        """Fold the events written since the last call; return a copy of the per-model histograms."""
        with self._lock:
            newest = int(db.value("SELECT MAX(id) FROM run_events") or 0)
            if newest > self.last_id:
                for model, seconds, tokens in db.rows(_NEW_ANSWERS, (self.last_id, newest)):
                    self._add(str(model or "?"), seconds, tokens)
                self.last_id = newest
            return copy.deepcopy(self.models)

    def _add(self, model: str, seconds: object, tokens: object) -> None:
        answers = self.models.setdefault(model, ModelAnswers())
        if isinstance(seconds, int | float):
            answers.seconds.add(float(seconds))
        if isinstance(tokens, int | float):
            answers.tokens.add(float(tokens))
