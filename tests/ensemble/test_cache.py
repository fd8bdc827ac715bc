"""The query cache in the learning database: hits and misses, what the key depends on (and what it
does not), the size limit with least-recently-used eviction, persistence."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kisystem.ensemble.cache import CacheKey, QueryCache, normalise_prompt
from kisystem.ensemble.members import Member, Tier
from kisystem.store import LearningStore

T0 = datetime(2025, 11, 1, 10, 0, tzinfo=UTC)
MODELS = ("qwen", "smol")
SAMPLING = {"max_tokens": 512}


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[LearningStore]:
    with LearningStore.open(tmp_path / "learning.db", clock=clock) as store:
        yield store


def key(prompt: str = "What is 2+2?", models=MODELS, sampling=SAMPLING, tier: Tier = Tier.SIMPLE) -> CacheKey:
    return CacheKey.of(prompt, models, sampling, tier)


def test_a_miss_then_a_hit_with_the_answer_and_its_figures(store: LearningStore, clock: Clock) -> None:
    cache = QueryCache(store)
    assert cache.get(key()) is None and len(cache) == 0
    assert cache.put(key(), "4", {"confidence": 0.75, "agreement": 3, "cluster": [0, 2, 3]}) == 0
    clock.now = T0 + timedelta(minutes=5)
    hit = cache.get(key())
    assert hit is not None and (hit.answer, hit.figures, hit.hits) == ("4", {"agreement": 3, "cluster": [0, 2, 3],
                                                                             "confidence": 0.75}, 1)  # fmt: skip
    assert (hit.tier, hit.models, hit.created, hit.used) == (Tier.SIMPLE, MODELS, T0, T0 + timedelta(minutes=5))
    assert cache.get(key()).hits == 2 and cache.peek(key()).hits == 2  # peek counts no hit


def test_the_prompt_is_normalised_whitespace_only() -> None:
    assert normalise_prompt("  What  is\n\t2+2? \n") == "What is 2+2?"
    assert key("  What  is\n\t2+2? \n").digest == key().digest
    assert key("what is 2+2?").digest != key().digest  # case is kept: it changes code
    assert key("What is 2 + 2?").digest != key().digest


def test_the_model_set_is_sorted_and_the_sampling_keys_too() -> None:
    assert key(models=["smol", "qwen", "smol"]).digest == key(models=["qwen", "smol"]).digest
    assert key(sampling={"b": 1, "a": 2}).digest == key(sampling={"a": 2, "b": 1}).digest
    assert len(key().digest) == 64 and int(key().digest, 16) >= 0


@pytest.mark.parametrize("other", [
    {"models": ("qwen",)}, {"models": ("qwen", "smol", "big")}, {"sampling": {"max_tokens": 256}},
    {"sampling": {}}, {"tier": Tier.MEDIUM}, {"prompt": "What is 3+3?"},
])  # fmt: skip
def test_any_other_part_of_the_key_is_a_miss(store: LearningStore, other: dict) -> None:
    cache = QueryCache(store)
    cache.put(key(), "4")
    assert cache.get(key(**other)) is None and cache.get(key()) is not None


def test_a_fan_outs_key_depends_on_its_members_samples_and_temperatures_not_their_order() -> None:
    members = [Member("smol", 0, 0.0), Member("qwen", 0, 0.0), Member("qwen", 1, 0.8)]
    base = CacheKey.for_members("q", members, Tier.MEDIUM, {"max_tokens": 512})
    assert CacheKey.for_members("q", list(reversed(members)), Tier.MEDIUM, {"max_tokens": 512}) == base
    assert base.models == ("qwen", "smol")
    hotter = [*members[:2], Member("qwen", 1, 0.9)]
    assert CacheKey.for_members("q", hotter, Tier.MEDIUM, {"max_tokens": 512}).digest != base.digest
    assert CacheKey.for_members("q", members[:2], Tier.MEDIUM, {"max_tokens": 512}).digest != base.digest


def test_over_the_size_limit_the_least_recently_used_go_first(store: LearningStore) -> None:
    cache = QueryCache(store, max_entries=2)
    a, b, c, d = (key(p) for p in "abcd")
    assert cache.put(a, "A") == 0 and cache.put(b, "B") == 0
    assert cache.get(a).answer == "A"  # a is now used more recently than b
    assert cache.put(c, "C") == 1  # evicts b
    assert [cache.peek(k) is not None for k in (a, b, c)] == [True, False, True] and len(cache) == 2
    assert cache.put(d, "D") == 1  # evicts a: c was put after a's last use
    assert [cache.peek(k) is not None for k in (a, b, c, d)] == [False, False, True, True]


def test_a_put_replaces_the_answer_and_starts_its_hits_over(store: LearningStore, clock: Clock) -> None:
    cache = QueryCache(store)
    cache.put(key(), "5", {"confidence": 0.2})
    cache.get(key())
    clock.now = T0 + timedelta(hours=1)
    cache.put(key(), "4", {"confidence": 1.0})
    row = cache.peek(key())
    assert (row.answer, row.figures, row.hits, row.created, len(cache)) == ("4", {"confidence": 1.0}, 0,
                                                                            T0 + timedelta(hours=1), 1)  # fmt: skip


def test_the_cache_lives_in_the_learning_database(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "learning.db"
    with LearningStore.open(path, clock=clock) as store:
        QueryCache(store).put(key(), "4", {"confidence": 1.0})
    with QueryCache.open(path, clock=clock) as reopened:
        assert reopened.get(key()).answer == "4"
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT tier, models, hits FROM ensemble_cache").fetchall() == [("simple", '["qwen", "smol"]',
                                                                                         1)]  # fmt: skip


def test_clear_empties_it_and_a_cache_needs_room(store: LearningStore) -> None:
    cache = QueryCache(store)
    cache.put(key("a"), "A")
    cache.put(key("b"), "B")
    assert cache.clear() == 2 and len(cache) == 0 and cache.get(key("a")) is None
    with pytest.raises(ValueError, match="at least one entry"):
        QueryCache(store, max_entries=0)
