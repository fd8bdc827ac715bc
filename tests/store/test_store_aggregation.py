"""Aggregation reads on a small known data set."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kisystem.store import DomainStats, ErrorType, LearningStore, ModelOutcome, ModelStats, Outcome, RunResult

T0 = datetime(2025, 11, 1, tzinfo=UTC)


def _day(n: int) -> datetime:
    return T0 + timedelta(days=n)


# (start day, domain, model, outcome, wall_s, error_type); None outcome = still running
DATA: list[tuple[int, str, str, Outcome | None, float | None, ErrorType | None]] = [
    (0, "CUDA/Kernel", "qwen", "success", 100.0, None),
    (1, "CUDA/Kernel", "qwen", "failed", 140.0, "COMPILATION"),
    (2, "CUDA/Kernel", "r1", "success", 120.0, None),
    (3, "CUDA/Kernel", "qwen", None, None, None),
    (0, "Audio/DSP", "coder", "exhausted", 60.0, "LOGIC"),
    (1, "Audio/DSP", "coder", "success", 80.0, None),
    (2, "Audio/DSP", "coder", "aborted", 10.0, None),
    (3, "Audio/DSP", "coder", "error", None, "COMPILATION"),
]


class Clock:
    now = T0

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LearningStore]:
    clock = Clock()
    with LearningStore.open(tmp_path / "agg.db", clock=clock) as s:
        for day, domain, model, outcome, wall_s, error_type in DATA:
            clock.now = _day(day)
            run_id = s.start_run("t", domain, model)
            if outcome is not None:
                # wall_s None: the store computes it, 0 s on this frozen clock
                s.finish_run(run_id, RunResult(model, 1, 50.0, outcome, error_type=error_type, wall_s=wall_s))
        yield s


def test_domain_stats(store: LearningStore) -> None:
    assert store.domain_stats() == [
        DomainStats("Audio/DSP", runs=4, successes=1, avg_time_s=(60 + 80 + 10 + 0) / 4,
                    last_error_ts=_day(3), last_success_ts=_day(1)),
        DomainStats("CUDA/Kernel", runs=3, successes=2, avg_time_s=120.0,
                    last_error_ts=_day(1), last_success_ts=_day(2)),
    ]  # fmt: skip
    assert store.domain_stats()[1].success_rate == pytest.approx(2 / 3)


def test_model_stats(store: LearningStore) -> None:
    assert store.model_stats() == [
        ModelStats("Audio/DSP", "coder", 4, 1, 37.5),
        ModelStats("CUDA/Kernel", "qwen", 2, 1, 120.0),
        ModelStats("CUDA/Kernel", "r1", 1, 1, 120.0),
    ]
    assert store.model_stats("CUDA/Kernel") == store.model_stats()[1:]


def test_model_outcomes(store: LearningStore) -> None:
    assert store.model_outcomes("CUDA/Kernel") == [
        ModelOutcome("CUDA/Kernel", "qwen", "success", _day(0)),
        ModelOutcome("CUDA/Kernel", "qwen", "failed", _day(1)),
        ModelOutcome("CUDA/Kernel", "r1", "success", _day(2)),
    ]
    assert len(store.model_outcomes()) == 7


def test_error_type_counts(store: LearningStore) -> None:
    assert store.error_type_counts() == {"COMPILATION": 2, "LOGIC": 1}
    assert store.error_type_counts("Audio/DSP") == {"COMPILATION": 1, "LOGIC": 1}


def test_empty_database_aggregates_to_nothing(tmp_path: Path) -> None:
    with LearningStore.open(tmp_path / "empty.db") as s:
        assert (s.domain_stats(), s.model_stats(), s.model_outcomes(), s.error_type_counts()) == ([], [], [], {})
