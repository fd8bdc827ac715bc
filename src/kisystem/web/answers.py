"""Generation latency and tokens per model (and per model and domain), folded forward from the loop's
``answer`` events: one pass serves ``/metrics``, the overview and the Models page.

``run_events`` is append-only and its ids only grow, so a fold that remembers the last id it read
needs to read only the events written since: a Prometheus scrape every 15 s costs a range scan of
the newest rows, not a pass over every event the database ever logged.  The sums are what the loop
recorded, so the histograms behave as Prometheus counters (they only grow).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field, replace

from prometheus_client.utils import floatToGoString

from kisystem.web.db import DashboardDb

SECONDS_BUCKETS: tuple[float, ...] = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300)
TOKEN_BUCKETS: tuple[float, ...] = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)

_NEW_ANSWERS = """
SELECT json_extract(e.payload, '$.model'), r.domain, json_extract(e.payload, '$.seconds'),
       json_extract(e.payload, '$.completion_tokens')
FROM run_events e LEFT JOIN runs r ON r.run_id = e.run_id
WHERE e.id > ? AND e.id <= ? AND e.kind = 'answer'
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


@dataclass
class AnswerSums:
    """The timed answers of one model in one domain: how many, their seconds, their completion tokens."""

    answers: int = 0
    seconds: float = 0.0
    tokens: int = 0
    token_seconds: float = 0.0  # the seconds of the answers that reported their tokens

    def add(self, seconds: object, tokens: object) -> None:
        if not isinstance(seconds, int | float) or seconds < 0:
            return
        self.answers += 1
        self.seconds += float(seconds)
        if isinstance(tokens, int | float):
            self.tokens += int(tokens)
            self.token_seconds += float(seconds)

    def plus(self, other: AnswerSums) -> AnswerSums:
        return AnswerSums(self.answers + other.answers, self.seconds + other.seconds, self.tokens + other.tokens,
                          self.token_seconds + other.token_seconds)  # fmt: skip


class AnswerFold:
    """Per-model histograms and per (model, domain) sums of every ``answer`` event up to the newest one read."""

    def __init__(self) -> None:
        self.last_id = 0
        self.models: dict[str, ModelAnswers] = {}
        self.pairs: dict[tuple[str, str], AnswerSums] = {}
        self._lock = threading.Lock()

    def update(self, db: DashboardDb) -> dict[str, ModelAnswers]:
        """Fold the events written since the last call; return a copy of the per-model histograms."""
        with self._lock:
            self._fold(db)
            return copy.deepcopy(self.models)

    def by_domain(self, db: DashboardDb) -> dict[tuple[str, str], AnswerSums]:
        """Fold the events written since the last call; return a copy of the per (model, domain) sums."""
        with self._lock:
            self._fold(db)
            return {key: replace(sums) for key, sums in self.pairs.items()}

    def _fold(self, db: DashboardDb) -> None:
        newest = int(db.value("SELECT MAX(id) FROM run_events") or 0)
        if newest > self.last_id:
            for model, domain, seconds, tokens in db.rows(_NEW_ANSWERS, (self.last_id, newest)):
                self._add(str(model or "?"), str(domain), seconds, tokens)
            self.last_id = newest

    def _add(self, model: str, domain: str, seconds: object, tokens: object) -> None:
        answers = self.models.setdefault(model, ModelAnswers())
        if isinstance(seconds, int | float):
            answers.seconds.add(float(seconds))
        if isinstance(tokens, int | float):
            answers.tokens.add(float(tokens))
        self.pairs.setdefault((model, domain), AnswerSums()).add(seconds, tokens)
