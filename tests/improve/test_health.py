"""Health score per model: seed C's formula on recorded runs and feedback, the history and its trend."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kisystem.errors import UsageError
from kisystem.improve.health import (
    Health,
    NoHealth,
    health_score,
    response_time_score,
    trend_of,
)
from tests.improve.health_support import PY, SMALL, Db


@pytest.fixture
def db(tmp_path: Path):
    d = Db(tmp_path / "learning.db")
    yield d
    d.close()


def test_the_formula_worked_example() -> None:
    # (0.75·0.40 + 1.0·0.25 + 0.8·0.20 + (1 − 0.25)·0.15)·100 = 30 + 25 + 16 + 11.25
    assert health_score(0.75, 1.0, 0.8, 0.25) == pytest.approx(82.25)
    assert health_score(1, 1, 1, 0) == pytest.approx(100) and health_score(0, 0, 0, 1) == 0


def test_response_time_score_is_full_up_to_the_sla_and_zero_at_the_timeout() -> None:
    assert response_time_score(20, 30, 60) == response_time_score(30, 30, 60) == 1.0
    assert response_time_score(45, 30, 60) == pytest.approx(0.5)
    assert response_time_score(60, 30, 60) == response_time_score(90, 30, 60) == 0.0


def test_health_from_recorded_runs_events_and_quality_feedback(db: Db) -> None:
    """The worked example from a database: 3 of 4 runs solved, 1 of 4 iterations with an error, 20 s per
    generation against small's 30 s SLA, quality 0.9 and 0.7."""
    db.run(SMALL, iterations=((20.0, False),))
    db.run(SMALL, iterations=((20.0, False),), build_s=10.0)  # the build's own seconds are not generation time
    db.run(SMALL, iterations=((20.0, False),))
    db.run(SMALL, "exhausted", iterations=((20.0, True),))
    db.quality(SMALL, 0.9)
    db.quality(SMALL, 0.7, source="user")
    health = db.monitor.compute(SMALL)
    assert isinstance(health, Health)
    assert (health.success_rate, health.error_rate, health.response_time_score) == (0.75, 0.25, 1.0)
    assert health.code_quality == pytest.approx(0.8)
    assert health.score == pytest.approx(82.25)
    assert health.details["mean_generation_s"] == pytest.approx(20.0, abs=0.01)
    assert (health.details["sla_s"], health.details["timeout_s"], health.details["unmeasured"]) == (30.0, 60.0, [])


def test_generation_time_is_the_answer_events_seconds(db: Db) -> None:
    db.run(SMALL, iterations=((20.0, False), (40.0, True)), build_s=5.0, answered=True)
    assert db.monitor.compute(SMALL).details["mean_generation_s"] == pytest.approx(30.0, abs=0.01)


def test_slow_generations_lower_the_response_time_score(db: Db) -> None:
    db.run(SMALL, iterations=((40.0, False), (50.0, False)))  # mean 45 s: halfway from SLA 30 s to timeout 60 s
    health = db.monitor.compute(SMALL)
    assert health.response_time_score == pytest.approx(0.5, abs=0.01)
    assert health.error_rate == 0.0 and health.success_rate == 1.0


def test_without_quality_feedback_the_neutral_default_is_used_and_said(db: Db) -> None:
    db.run(SMALL)
    health = db.monitor.compute(SMALL)
    assert health.code_quality == db.config.health.unmeasured_quality == 0.8
    assert health.details["unmeasured"] == ["code_quality"]


def test_a_model_escalated_from_counts_the_run_as_failed_and_its_own_iterations(db: Db) -> None:
    db.run("big", iterations=((10.0, True, SMALL), (10.0, True, SMALL), (30.0, False)), tried=(SMALL, "big"))
    small, big = db.monitor.compute(SMALL), db.monitor.compute("big")
    assert (small.runs, small.success_rate, small.error_rate) == (1, 0.0, 1.0)
    assert (big.runs, big.success_rate, big.error_rate) == (1, 1.0, 0.0)
    assert big.details["mean_generation_s"] == pytest.approx(30.0, abs=0.01)


def test_only_runs_inside_the_window_count(db: Db) -> None:
    db.run(SMALL, "failed", iterations=((5.0, True),))
    db.clock.advance(days=8)
    db.run(SMALL)
    assert db.monitor.compute(SMALL).success_rate == 1.0
    assert db.monitor.compute(SMALL, days=30).success_rate == 0.5


def test_no_runs_no_score_and_an_unknown_agent_is_refused(db: Db) -> None:
    assert isinstance(db.monitor.compute("big"), NoHealth)
    assert db.monitor.history() == []  # nothing computed, nothing stored
    with pytest.raises(UsageError, match="unknown agent 'nope'"):
        db.monitor.require_agent("nope")
    db.monitor.require_agent("big")  # a model of the inventory, without runs


def test_every_computation_is_stored_and_the_trend_read_from_the_history(db: Db) -> None:
    for _ in range(4):
        db.run(SMALL)
    first = db.monitor.compute(SMALL)
    assert (first.trend, first.previous, first.id) == ("stable", None, 1)  # nothing to compare with
    db.run(SMALL, "failed", iterations=((5.0, True),))  # 4 of 5: success 1.0 -> 0.8, errors 0 -> 0.2
    second = db.monitor.compute(SMALL)
    assert first.score - second.score == pytest.approx(8 + 3)  # 0.2·40 + 0.2·15 points
    assert (second.trend, second.previous) == ("declining", pytest.approx(first.score))
    for _ in range(5):
        db.run(SMALL)  # 9 of 10: 90.5, the mean of the two before (96 and 85)
    third = db.monitor.compute(SMALL)
    assert third.trend == "stable" and third.score == pytest.approx((first.score + second.score) / 2)
    history = db.monitor.history(SMALL)
    assert [h.id for h in history] == [3, 2, 1] and [h.trend for h in history] == ["stable", "declining", "stable"]
    assert history[1].score == pytest.approx(second.score) and history[1].previous == pytest.approx(first.score)
    assert db.monitor.latest()[SMALL].id == 3


def test_an_improving_trend_and_the_threshold() -> None:
    assert trend_of(80.0, [70.0, 76.0], 5.0) == "improving"
    assert trend_of(77.9, [70.0, 76.0], 5.0) == "stable"  # 4.9 points above the mean 73
    assert trend_of(68.0, [70.0, 76.0], 5.0) == "declining"
    assert trend_of(50.0, [], 5.0) == "stable"


def test_the_history_is_append_only(db: Db) -> None:
    db.run(SMALL)
    db.monitor.compute(SMALL)
    conn = sqlite3.connect(db.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE health_history SET score = 100")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM health_history")


def test_the_trend_compares_only_scores_over_the_same_window(db: Db) -> None:
    db.run(SMALL)
    db.monitor.compute(SMALL, days=30)
    db.run(SMALL, "failed", iterations=((5.0, True),))
    assert db.monitor.compute(SMALL, days=7).previous is None
    assert db.monitor.compute(SMALL, days=30).trend == "declining"
    assert {h.days for h in db.monitor.history(SMALL)} == {7, 30}
    assert PY  # the domain of every run here
