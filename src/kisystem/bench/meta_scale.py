"""`bench meta-scale`: the meta-supervisor's answers over a large learning database.

Builds a database of synthetic finished runs (the built-in ``ollama`` profile's domains
and chains; up to a year of history, busy recently in some domains and mostly old in
others, so that some domains earn a model bias and some do not; escalations recorded in
``models_tried``), then times ``next_priorities`` plus ``recommend_model_bias`` read from
the store's aggregates and from full-scan SQL over ``runs``, in the same process, and
checks that both give the same answers.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from kisystem.config import OptimizationConfig
from kisystem.models.inventory import load_inventory
from kisystem.routing.meta import MetaSupervisor
from kisystem.store.learning import LearningStore, RunRecord, utc_now

TARGET_MS = 50.0
MAX_AGE_DAYS = 365.0
MEAN_AGE_DAYS = (3.0, 30.0, 7.0, 120.0)  # per domain, in turn
RARE_OUTCOMES = (("aborted", 0.03), ("error", 0.02), ("interrupted", 0.01))

Answers = tuple[list[tuple[str, float]], dict[str, str]]


@dataclass(frozen=True)
class ScaleResult:
    runs: int
    build_s: float
    aggregate_ms: float
    scan_ms: float
    agree: bool

    @property
    def ratio(self) -> float:
        return self.scan_ms / self.aggregate_ms if self.aggregate_ms else float("inf")

    @property
    def meets_target(self) -> bool:
        return self.aggregate_ms < TARGET_MS


class _Synth:
    """Plausible runs: each model has a fixed solve rate per domain; a failure may escalate."""

    def __init__(self, seed: int, now: datetime) -> None:
        self.rng = random.Random(seed)
        self.now = now
        self.chains = {d: r.chain for d, r in load_inventory("ollama").routes.items()}
        self.domains = list(self.chains)
        self.domain_weights = [self.rng.uniform(0.5, 3.0) for _ in self.domains]
        self.mean_age = {d: MEAN_AGE_DAYS[i % len(MEAN_AGE_DAYS)] for i, d in enumerate(self.domains)}
        self.solve = {(d, m): self.rng.uniform(0.4, 0.97) for d, c in self.chains.items() for m in c}

    def run(self, i: int) -> RunRecord:
        rng = self.rng
        domain = rng.choices(self.domains, self.domain_weights)[0]
        chain = self.chains[domain]
        start = 1 if len(chain) > 1 and rng.random() < 0.15 else 0  # a bias or a user's pick
        tried, solved = self._attempts(domain, chain[start:])
        wall = sum(rng.lognormvariate(4.5, 0.8) for _ in tried)
        ts = self.now - timedelta(days=min(MAX_AGE_DAYS, rng.expovariate(1 / self.mean_age[domain])))
        outcome = "success" if solved else self._failure(len(tried) == len(chain))
        return RunRecord(f"bench{i:010d}", f"task{i % 5000}", domain, tried[-1], len(tried), 90.0 if solved else None,
                         outcome, None, None, 0.0, 0.0, 0.0, ts, ts + timedelta(seconds=wall), 0, 0, None,
                         tuple(tried), None if outcome == "interrupted" else wall, None)  # fmt: skip

    def _attempts(self, domain: str, chain: tuple[str, ...]) -> tuple[list[str], bool]:
        tried: list[str] = []
        for model in chain:
            tried.append(model)
            if self.rng.random() < self.solve[(domain, model)]:
                return tried, True
            if self.rng.random() < 0.4:  # the budget ran out before stop-loss escalated
                break
        return tried, False

    def _failure(self, exhausted: bool) -> str:
        roll = self.rng.random()
        for outcome, share in RARE_OUTCOMES:
            if roll < share:
                return outcome
            roll -= share
        return "exhausted" if exhausted else "failed"


def synthetic_runs(n: int, now: datetime, seed: int = 0) -> Iterator[RunRecord]:
    synth = _Synth(seed, now)
    return (synth.run(i) for i in range(n))


def build_db(path: Path, n: int, now: datetime, seed: int = 0) -> float:
    """Import ``n`` synthetic runs into the store at ``path`` in one transaction; return seconds."""
    started = time.perf_counter()
    with LearningStore.open(path, clock=lambda: now) as store:
        store.import_runs(synthetic_runs(n, now, seed))
    return time.perf_counter() - started


def time_answers(meta: MetaSupervisor, repeats: int) -> tuple[float, Answers]:
    """Median milliseconds of next_priorities + recommend_model_bias, and the last answers."""
    times, answers = [], ([], {})
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        answers = (meta.next_priorities(), meta.recommend_model_bias())
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), answers


def same_answers(a: Answers, b: Answers, tol: float = 1e-9) -> bool:
    (pa, ba), (pb, bb) = a, b
    same_order = [d for d, _ in pa] == [d for d, _ in pb]
    return same_order and ba == bb and all(abs(x - y) <= tol for (_, x), (_, y) in zip(pa, pb))


def measure(path: Path, now: datetime, repeats: int = 20, scan_repeats: int = 1) -> tuple[float, float, bool]:
    """(aggregate ms, full-scan ms, whether they agree) over the database at ``path``."""
    config = OptimizationConfig()
    with LearningStore.open(path, clock=lambda: now) as store:
        fast_ms, fast = time_answers(MetaSupervisor(store, config, lambda: now), repeats)
        slow_ms, slow = time_answers(MetaSupervisor(store, config, lambda: now, full_scan=True), scan_repeats)
    return fast_ms, slow_ms, same_answers(fast, slow)


def run_meta_scale(runs: int = 1_000_000, db: Path | None = None, *, repeats: int = 20,
                   scan_repeats: int = 1, seed: int = 0) -> ScaleResult:  # fmt: skip
    """Build (unless ``db`` already exists) and measure; a temporary database is removed after."""
    now = utc_now()
    with tempfile.TemporaryDirectory(prefix="kisystem-meta-scale-") as tmp:
        path = db or Path(tmp) / "meta-scale.db"
        build_s = 0.0 if path.exists() else build_db(path, runs, now, seed)
        with LearningStore.open(path) as store:
            total = sum(s.runs for s in store.domain_aggregates())
        fast_ms, slow_ms, agree = measure(path, now, repeats, scan_repeats)
    return ScaleResult(total, build_s, fast_ms, slow_ms, agree)
