"""The ensemble's query cache in the learning database (migration 11): :class:`QueryCache`.

A question asked again with the same models, sampling and tier gets the answer the ensemble
chose last time, without asking a model.  The key is the sha256 of a canonical JSON of

- the prompt, normalised: whitespace runs collapsed to one space, the ends stripped (case and
  punctuation kept: they change code);
- the model set, sorted (the order the fleet ranks them in does not change the answer);
- the sampling parameters (max tokens, the members' samples and temperatures, ...), keys sorted;
- the tier.

A row holds the chosen answer, the consensus figures (JSON), when it was made, when it was last
used and how often it was hit.  The cache keeps at most ``max_entries`` rows
(``ensemble.cache_max_entries``): a put beyond that evicts the least recently used ones (a hit
counts as a use).  ``kisystem ensemble ask --no-cache`` neither reads nor writes it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kisystem.ensemble.members import Member, Tier
from kisystem.store import db
from kisystem.store.base import GuardedStore

DEFAULT_MAX_ENTRIES = 1000


def normalise_prompt(prompt: str) -> str:
    """``prompt`` with every whitespace run collapsed to one space and the ends stripped."""
    return " ".join(prompt.split())


@dataclass(frozen=True)
class CacheKey:
    """What a cached answer depends on; ``digest`` is its row key."""

    prompt: str  # normalised
    models: tuple[str, ...]  # sorted, unique
    sampling: str  # canonical JSON of the sampling parameters
    tier: Tier

    @classmethod
    def of(cls, prompt: str, models: Iterable[str], sampling: Mapping[str, Any], tier: Tier) -> CacheKey:
        """The key of a question, normalised (see the module docstring)."""
        return cls(normalise_prompt(prompt), tuple(sorted(set(models))), _canonical(sampling), Tier(tier))

    @classmethod
    def for_members(cls, prompt: str, members: Iterable[Member], tier: Tier,
                    sampling: Mapping[str, Any] | None = None) -> CacheKey:  # fmt: skip
        """The key of a fan-out: its members' models, samples and temperatures join ``sampling``."""
        members = sorted(members, key=lambda m: (m.model, m.sample, m.temperature))
        asked = [[m.model, m.sample, m.temperature] for m in members]
        return cls.of(prompt, (m.model for m in members), {**(sampling or {}), "members": asked}, tier)

    @property
    def digest(self) -> str:
        text = _canonical({"prompt": self.prompt, "models": list(self.models), "sampling": self.sampling,
                           "tier": self.tier.value})  # fmt: skip
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CachedAnswer:
    """A cache row: the chosen answer and its consensus figures, and how it has been used."""

    answer: str
    figures: dict[str, Any] = field(default_factory=dict)
    tier: Tier | None = None
    models: tuple[str, ...] = ()
    created: datetime | None = None
    used: datetime | None = None
    hits: int = 0


class QueryCache(GuardedStore):
    """Reads and writes of ``ensemble_cache`` through a store's guarded connection (``QueryCache(learning)``
    shares the learning store's connection, lock and clock)."""

    def __init__(self, store: Any, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        """``store``: a LearningStore (anything with ``.guarded``) or a :class:`db.Guarded` itself."""
        if max_entries < 1:
            raise ValueError(f"a query cache needs room for at least one entry, not {max_entries}")
        self.guarded: db.Guarded = getattr(store, "guarded", store)
        self.max_entries = max_entries

    @classmethod
    def open(cls, path: Path, *, max_entries: int = DEFAULT_MAX_ENTRIES,
             clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> QueryCache:  # fmt: skip
        """The cache of the learning database at ``path`` (created, schema brought up to date)."""
        path = Path(path)
        return cls(db.Guarded(db.open_migrated(path), path, clock, db.LEARNING_DB), max_entries)

    def get(self, key: CacheKey) -> CachedAnswer | None:
        """The cached answer for ``key`` (counted as a hit and a use), or None."""
        with self.guarded.writing("cannot read the ensemble's query cache") as conn:
            row = conn.execute("SELECT * FROM ensemble_cache WHERE key = ?", (key.digest,)).fetchone()
            if row is None:
                return None
            used = self._now()
            conn.execute("UPDATE ensemble_cache SET hits = hits + 1, used_ts = ?, used_seq = ? WHERE key = ?",
                         (used, _next_seq(conn), key.digest))  # fmt: skip
        return _cached(row, hits=row["hits"] + 1, used=used)

    def put(self, key: CacheKey, answer: str, figures: Mapping[str, Any] | None = None) -> int:
        """Store (or replace) the answer for ``key``; evict the least recently used rows beyond the
        size limit.  Returns how many were evicted."""
        now = self._now()
        with self.guarded.writing("cannot write the ensemble's query cache") as conn:
            conn.execute("INSERT INTO ensemble_cache (key, tier, models, answer, figures, created_ts, used_ts,"
                         " used_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET answer ="
                         " excluded.answer,"
                         " figures = excluded.figures, created_ts = excluded.created_ts, used_ts = excluded.used_ts,"
                         " used_seq = excluded.used_seq, hits = 0",
                         (key.digest, key.tier.value, json.dumps(list(key.models)), answer,
                          json.dumps(dict(figures or {}), sort_keys=True, default=str), now, now,
                          _next_seq(conn)))  # fmt: skip
            evicted = conn.execute("DELETE FROM ensemble_cache WHERE key IN (SELECT key FROM ensemble_cache"
                                   " ORDER BY used_seq DESC LIMIT -1 OFFSET ?)", (self.max_entries,))  # fmt: skip
            return max(0, evicted.rowcount)

    def peek(self, key: CacheKey) -> CachedAnswer | None:
        """The row for ``key`` without counting a hit (for reports and tests)."""
        rows = self.guarded.rows("SELECT * FROM ensemble_cache WHERE key = ?", (key.digest,),
                                 what="cannot read the ensemble's query cache")  # fmt: skip
        return _cached(rows[0]) if rows else None

    def __len__(self) -> int:
        rows = self.guarded.rows("SELECT COUNT(*) FROM ensemble_cache", what="cannot read the ensemble's query cache")
        return int(rows[0][0])

    def clear(self) -> int:
        """Remove every cached answer; how many there were."""
        with self.guarded.writing("cannot clear the ensemble's query cache") as conn:
            return max(0, conn.execute("DELETE FROM ensemble_cache").rowcount)

    def _now(self) -> str:
        return self.guarded.clock().isoformat()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _next_seq(conn: Any) -> int:
    return int(conn.execute("SELECT COALESCE(MAX(used_seq), 0) + 1 FROM ensemble_cache").fetchone()[0])


def _cached(row: Any, *, hits: int | None = None, used: str | None = None) -> CachedAnswer:
    return CachedAnswer(row["answer"], json.loads(row["figures"]), Tier(row["tier"]), tuple(json.loads(row["models"])),
                        datetime.fromisoformat(row["created_ts"]), datetime.fromisoformat(used or row["used_ts"]),
                        row["hits"] if hits is None else hits)  # fmt: skip
