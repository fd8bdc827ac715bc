"""Aggregates kept on every write agree with full scans of ``runs`` (migration 3)."""

from __future__ import annotations

import json
import math
import random
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kisystem.errors import StoreError
from kisystem.store import LATEST_VERSION, LearningStore, RunResult, db
from kisystem.store.learning import (
    DECAY_TAU_S,
    MODEL_EVIDENCE_OUTCOMES,
    ModelEvidence,
    RunRecord,
    decay_mass,
)
from kisystem.store.migrations import migrate

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DOMAINS = ("CUDA/Kernel", "Audio/DSP", "C++/System")
MODELS = ("small", "mid", "large", "huge")
OUTCOMES = ("success", "success", "failed", "exhausted", "aborted", "error", "interrupted")


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _random_run(rng: random.Random) -> tuple[str, tuple[str, ...], str, datetime, float | None]:
    """(domain, models tried, outcome, start, wall_s) of one plausible run."""
    start = rng.randrange(len(MODELS) - 1)
    tried = tuple(MODELS[start : start + rng.randint(1, 2)])
    wall = None if rng.random() < 0.1 else round(rng.uniform(1, 900), 3)
    ts = NOW - timedelta(seconds=rng.uniform(0, 200 * 86400))
    return rng.choice(DOMAINS), tried, rng.choice(OUTCOMES), ts, wall


def _seed_through_api(store: LearningStore, clock: Clock, rng: random.Random, n: int) -> None:
    for _ in range(n):
        domain, tried, outcome, ts, wall = _random_run(rng)
        clock.now = ts
        run_id = store.start_run("task", domain, tried[0])
        if outcome == "interrupted":
            clock.now = ts + timedelta(hours=3)
            store.mark_interrupted(older_than_s=3600)
        else:
            store.finish_run(run_id, RunResult(tried[-1], 1, None, outcome, models_tried=tried, wall_s=wall))
    store.start_run("task", "CUDA/Kernel", "small")  # still running: in no aggregate
    clock.now = NOW


def _insert_raw(conn: sqlite3.Connection, rng: random.Random, n: int) -> None:
    """Rows as a schema-2 kisystem wrote them, some with an empty models_tried."""
    for i in range(n):
        domain, tried, outcome, ts, wall = _random_run(rng)
        tried_json = json.dumps(list(tried) if i % 3 else [])
        conn.execute(
            "INSERT INTO runs (run_id, task, domain, model, outcome, ts, wall_s, models_tried)"
            " VALUES (?, 't', ?, ?, ?, ?, ?, ?)",
            (f"old{i}", domain, tried[-1], outcome, ts.isoformat(timespec="microseconds"), wall, tried_json),
        )


def _reference_evidence(store: LearningStore, at: datetime) -> dict[tuple[str, str], tuple[int, int, float, float]]:
    """DESIGN decision 2 computed directly in Python from every finished run."""
    out: dict[tuple[str, str], list[float]] = {}
    for r in store.run_trails():
        if r.outcome not in MODEL_EVIDENCE_OUTCOMES:
            continue
        w = math.exp(-(at - r.ts).total_seconds() / DECAY_TAU_S)
        for m in dict.fromkeys((*r.models_tried, r.model)):
            won = r.outcome == "success" and m == r.model
            acc = out.setdefault((r.domain, m), [0, 0, 0.0, 0.0])
            acc[0] += 1
            acc[1] += won
            acc[2] += w * won
            acc[3] += w
    return {k: (int(v[0]), int(v[1]), v[2], v[3]) for k, v in out.items()}


def _as_key(rows: list[ModelEvidence]) -> dict[tuple[str, str], tuple[int, int, float, float]]:
    return {(e.domain, e.model): (e.runs, e.successes, e.weighted_successes, e.weighted_runs) for e in rows}


def _assert_agree(store: LearningStore, at: datetime = NOW) -> None:
    agg, scan = store.domain_aggregates(), store.domain_stats()
    assert [(d.domain, d.runs, d.successes, d.last_error_ts, d.last_success_ts) for d in agg] == [
        (d.domain, d.runs, d.successes, d.last_error_ts, d.last_success_ts) for d in scan
    ]
    assert [d.avg_time_s for d in agg] == pytest.approx([d.avg_time_s for d in scan], rel=1e-12)
    fast, slow = _as_key(store.model_evidence(at=at)), _as_key(store.model_evidence_scan(at=at))
    reference = _reference_evidence(store, at)
    assert fast.keys() == slow.keys() == reference.keys()
    for key, (runs, wins, ws, wr) in reference.items():
        for got in (fast[key], slow[key]):
            assert got[:2] == (runs, wins)
            assert got[2:] == pytest.approx((ws, wr), rel=1e-9, abs=1e-12), key


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[LearningStore]:
    with LearningStore.open(tmp_path / "agg.db", clock=clock) as s:
        yield s


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_aggregates_agree_with_full_scan_on_random_history(store: LearningStore, clock: Clock, seed: int) -> None:
    _seed_through_api(store, clock, random.Random(seed), 150)
    _assert_agree(store)
    _assert_agree(store, NOW + timedelta(days=45))  # the same sums, decayed to a later read


def test_upgrade_from_schema_2_backfills_then_keeps_up(tmp_path: Path) -> None:
    path, rng, clock = tmp_path / "old.db", random.Random(7), Clock()
    conn = db.connect(path)
    assert migrate(conn, target=2) == 2
    _insert_raw(conn, rng, 120)
    conn.close()
    with LearningStore.open(path, clock=clock) as store:
        assert store.schema_version() == LATEST_VERSION >= 3
        assert sum(d.runs for d in store.domain_aggregates()) == 120
        _assert_agree(store)
        _seed_through_api(store, clock, rng, 60)
        _assert_agree(store)


def test_import_runs_and_rebuild(store: LearningStore) -> None:
    rng = random.Random(11)
    records = []
    for i in range(80):
        domain, tried, outcome, ts, wall = _random_run(rng)
        records.append(RunRecord(
            f"imp{i}", "t", domain, tried[-1], 1, None, outcome, None, None, 0.0, 0.0, 0.0, ts,
            ts + timedelta(seconds=wall or 0), 0, 0, None, tried, wall, None,
        ))  # fmt: skip
    assert store.import_runs(records) == 80
    _assert_agree(store)
    before = store.domain_aggregates()
    store.rebuild_aggregates()
    assert store.domain_aggregates() == before
    _assert_agree(store)


def test_import_refuses_running_rows_and_rolls_back(store: LearningStore) -> None:
    running = RunRecord("r", "t", "CUDA/Kernel", "m", 0, None, "running", None, None, 0.0, 0.0, 0.0,
                        NOW, None, 0, 0, None, (), None, None)  # fmt: skip
    with pytest.raises(ValueError, match="finished runs only"):
        store.import_runs([running])
    assert store.domain_aggregates() == [] and store.get_run("r") is None


def test_attribution_counts_every_tried_model_and_the_winner_once(store: LearningStore, clock: Clock) -> None:
    run_id = store.start_run("t", "CUDA/Kernel", "small")
    store.finish_run(run_id, RunResult("large", 3, 90.0, "success", models_tried=("small", "mid", "large")))
    evidence = {e.model: (e.runs, e.successes, e.weighted_successes) for e in store.model_evidence()}
    assert evidence == {"small": (1, 0, 0.0), "mid": (1, 0, 0.0), "large": (1, 1, pytest.approx(1.0))}
    clock.now = NOW + timedelta(days=30)
    assert store.model_evidence()[0].weighted_success_rate == pytest.approx(math.exp(-1))


def test_decay_range_is_guarded() -> None:
    assert decay_mass(datetime(2074, 1, 1, tzinfo=UTC)) < math.exp(600)
    with pytest.raises(StoreError, match="range"):
        decay_mass(datetime(2080, 1, 1, tzinfo=UTC))
    assert decay_mass(datetime(1900, 1, 1, tzinfo=UTC)) == 0.0


def test_schema_3_tables(tmp_path: Path) -> None:
    LearningStore.open(tmp_path / "s.db").close()
    conn = sqlite3.connect(tmp_path / "s.db")
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"domain_agg", "domain_model_agg"} <= tables
