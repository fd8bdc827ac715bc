"""Seed B's success metrics (:func:`kisystem.stats.collect`) for the Stats page and ``/metrics``, kept a while.

The meta-supervisor's statistics replay every run: on a database of 100,000 runs one report takes
about 10 s of CPU.  So a report is computed on its own read-only connection (never holding the pages' shared
one), kept, and served while it is younger than ``max_age_s``; an older one is still served at once
while a fresh one is computed in the background (a scrape must answer within its timeout).  Only the
first request of a window waits for its computation.  A database the report cannot be read from
(one of an older schema, without the queue's tables) gives the error's line instead, kept the same way.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from kisystem.config import OptimizationConfig
from kisystem.errors import KisystemError
from kisystem.stats import StatsReport, Window, collect
from kisystem.store import db as store_db
from kisystem.store.learning import Clock, LearningStore
from kisystem.web.db import DashboardDb

MAX_AGE_S = 300.0  # a refresh costs seconds of CPU on a big database; a scrape every 15 s must not keep it busy
WINDOWS_KEPT = 8  # distinct ?days= values kept; the oldest computed is dropped beyond that


@dataclass(frozen=True)
class Computed:
    """One report, or why there is none, with when and how long it took."""

    days: int | None
    at: datetime
    took_s: float
    report: StatsReport | None = None
    error: str | None = None


def _in_thread(work: Callable[[], object]) -> None:
    threading.Thread(target=work, name="kisystem-stats", daemon=True).start()


class StatsSource:
    """Reports per window (``days``: None for all history), computed at most once at a time per window."""

    def __init__(self, db: DashboardDb, clock: Clock, *, config: OptimizationConfig | None = None,
                 max_age_s: float = MAX_AGE_S, monotonic: Callable[[], float] = time.monotonic,
                 background: Callable[[Callable[[], object]], None] = _in_thread) -> None:  # fmt: skip
        self.db, self.clock, self.config = db, clock, config
        self.max_age_s, self.monotonic, self.background = max_age_s, monotonic, background
        self._kept: dict[int | None, tuple[float, Computed]] = {}
        self._busy: dict[int | None, threading.Lock] = {}
        self._lock = threading.Lock()

    def report(self, days: int | None = None) -> Computed:
        """The kept report of ``days`` (refreshed in the background once stale), or a new one."""
        kept = self._get(days)
        if kept is None:
            return self._compute(days)
        born, computed = kept
        if self.monotonic() - born >= self.max_age_s and not self._lock_of(days).locked():
            self.background(lambda: self._compute(days, if_older_than=born))
        return computed

    def warm(self, days: int | None = None) -> None:
        """Start computing ``days``'s report in the background (the app's start: /metrics then has it)."""
        self.background(lambda: self._compute(days))

    def _compute(self, days: int | None, if_older_than: float | None = None) -> Computed:
        with self._lock_of(days):  # a second caller waits for the first's report instead of computing it again
            kept = self._get(days)
            if kept is not None and (if_older_than is None or kept[0] > if_older_than):
                return kept[1]
            born = self.monotonic()
            computed = self._read(days)
            with self._lock:
                self._kept[days] = (born, computed)
                while len(self._kept) > WINDOWS_KEPT:
                    del self._kept[min(self._kept, key=lambda k: self._kept[k][0])]
            return computed

    def _read(self, days: int | None) -> Computed:
        now, started = self.clock(), time.perf_counter()
        try:
            conn = store_db.connect_read_only(self.db.path)
            conn.execute("PRAGMA query_only = ON")
            with LearningStore(conn, self.db.path, self.clock) as store:
                report = collect(store, Window(now, days), self.config)
        except KisystemError as err:
            return Computed(days, now, time.perf_counter() - started, error=str(err))
        return Computed(days, now, time.perf_counter() - started, report)

    def _get(self, days: int | None) -> tuple[float, Computed] | None:
        with self._lock:
            return self._kept.get(days)

    def _lock_of(self, days: int | None) -> threading.Lock:
        with self._lock:
            return self._busy.setdefault(days, threading.Lock())
