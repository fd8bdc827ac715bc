"""FeedbackLoop: validation, aggregates kept in the insert's transaction, callbacks after commit."""

from __future__ import annotations

import logging
import math
import random
import sqlite3
from pathlib import Path

import pytest

from kisystem.errors import UsageError
from kisystem.improve.feedback import FeedbackLoop
from kisystem.store.learning import LearningStore, RunResult
from kisystem.store.migrations import FEEDBACK_SOURCES, FEEDBACK_TYPES
from tests.improve.support import Clock, open_loop


@pytest.fixture
def fb(tmp_path: Path):
    store, loop = open_loop(tmp_path / "learning.db")
    with store:
        yield loop


def test_the_seeds_types_and_sources() -> None:
    assert FEEDBACK_TYPES == ("success", "failure", "quality_score", "user_rating", "performance", "coverage",
                              "security", "documentation")
    assert FEEDBACK_SOURCES == ("agent", "guardian", "user", "system", "test", "flock")


@pytest.mark.parametrize("type_, given, stored", [
    ("success", 0.7, 0.7), ("failure", 0, 0.0), ("quality_score", 1, 1.0), ("performance", 0.25, 0.25),
    ("coverage", 0.0, 0.0), ("security", 0.9, 0.9), ("documentation", 0.5, 0.5),
    ("user_rating", 1, 0.0), ("user_rating", 4, 0.75), ("user_rating", 5, 1.0),
])  # fmt: skip
def test_scores_are_stored_on_zero_to_one(fb: FeedbackLoop, type_: str, given: float, stored: float) -> None:
    entry = fb.record_feedback("m", "op", type_, given, {"k": "v"}, "system", {"domain": "Audio/DSP"})
    assert entry.score == stored
    [read] = fb.entries("m")
    assert (read.type, read.score, read.details, read.domain) == (type_, stored, {"k": "v"}, "Audio/DSP")


@pytest.mark.parametrize("call, message", [
    (dict(type="sucess"), "unknown feedback type 'sucess' (allowed: success, failure, quality_score"),
    (dict(source="boss"), "unknown feedback source 'boss' (allowed: agent, guardian, user, system, test, flock)"),
    (dict(score=1.5), "success score 1.5 is out of range (allowed: 0..1)"),
    (dict(score=-0.1), "success score -0.1 is out of range (allowed: 0..1)"),
    (dict(score=math.nan), "success score must be a finite number, got nan"),
    (dict(score=True), "success score must be a finite number, got True"),
    (dict(score="0.5"), "success score must be a finite number, got '0.5'"),
    (dict(type="failure", score=0.5), "failure score 0.5 is not allowed (a failure's score is always 0)"),
    (dict(type="user_rating", score=0), "rating 0 is not allowed (allowed: a whole number 1..5)"),
    (dict(type="user_rating", score=6), "rating 6 is not allowed (allowed: a whole number 1..5)"),
    (dict(type="user_rating", score=3.5), "rating 3.5 is not allowed (allowed: a whole number 1..5)"),
    (dict(agent_id=""), "agent id must be a non-empty string, got ''"),
    (dict(operation_id=None), "operation id must be a non-empty string, got None"),
    (dict(details=["x"]), "feedback details must be a mapping (a JSON object), got list"),
])  # fmt: skip
def test_bad_feedback_is_a_one_line_usage_error_and_writes_nothing(fb: FeedbackLoop, call: dict, message: str) -> None:
    args = dict(agent_id="m", operation_id="op", type="success", score=1.0, details={}, source="agent") | call
    with pytest.raises(UsageError) as err:
        fb.record_feedback(**args)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    assert fb.entries() == [] and fb.aggregates() == []


def test_shorthands(fb: FeedbackLoop) -> None:
    assert fb.record_success("m", "op1", {"lines": 50}).score == 1.0
    failure = fb.record_failure("m", "op2", {"error": "boom"}, "RUNTIME")
    assert (failure.score, failure.source) == (0.0, "agent")
    assert failure.details == {"error": "boom", "error_type": "RUNTIME"}
    quality = fb.record_quality_score("m", "op3", 0.85, {"readability": 0.9, "tests": 0.8})
    assert (quality.source, quality.details) == ("guardian", {"dimensions": {"readability": 0.9, "tests": 0.8}})
    rating = fb.record_user_rating("m", "op4", 2, "too slow")
    assert (rating.score, rating.source, rating.details) == (0.25, "user", {"rating": 2, "comment": "too slow"})
    with pytest.raises(UsageError, match="quality dimension 'tests' = 1.2 is out of range"):
        fb.record_quality_score("m", "op5", 0.5, {"tests": 1.2})
    assert len(fb.entries()) == 4


def test_aggregates_equal_a_scan_after_many_writes_from_two_connections(tmp_path: Path) -> None:
    rng = random.Random(7)
    store_a, a = open_loop(tmp_path / "l.db")
    store_b, b = open_loop(tmp_path / "l.db", Clock(step=a._clock.step * 1.5))
    with store_a, store_b:
        for i in range(400):
            loop = a if i % 3 else b
            type_ = rng.choice(FEEDBACK_TYPES)
            score = {"failure": 0, "user_rating": rng.randint(1, 5)}.get(type_, round(rng.random(), 3))
            loop.record_feedback(rng.choice(["m1", "m2", "m3"]), f"op{i}", type_, score, None,
                                 rng.choice(FEEDBACK_SOURCES))
        kept, scanned = a.aggregates(), a.aggregates_scan()
        assert [(k.agent_id, k.type, k.count, k.min_score, k.max_score, k.last_score, k.last_ts) for k in kept] == \
               [(s.agent_id, s.type, s.count, s.min_score, s.max_score, s.last_score, s.last_ts) for s in scanned]
        assert all(k.score_sum == pytest.approx(s.score_sum) for k, s in zip(kept, scanned))
        assert sum(k.count for k in kept) == 400 and b.stats()["entries"] == 400
        assert a.aggregates("m2") == [k for k in kept if k.agent_id == "m2"]


def test_callbacks_run_after_commit_and_a_raising_one_is_logged(fb: FeedbackLoop, tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[int, int, int]] = []

    def broken(entry) -> None:
        raise RuntimeError("observer bug")

    def committed(entry) -> None:  # another connection sees the entry and its aggregate: both committed
        other = sqlite3.connect(tmp_path / "learning.db")
        entries = other.execute("SELECT COUNT(*) FROM feedback_entries WHERE id = ?", (entry.id,)).fetchone()[0]
        count = other.execute("SELECT count FROM feedback_aggregates WHERE agent_id = 'm' AND type = 'success'"
                              ).fetchone()[0]
        other.close()
        seen.append((entry.id, entries, count))

    fb.on_feedback(broken)
    fb.on_feedback(committed)
    with caplog.at_level(logging.WARNING, logger="kisystem.improve.feedback"):
        first = fb.record_success("m", "op1")
        second = fb.record_success("m", "op2")
    assert seen == [(first.id, 1, 1), (second.id, 1, 2)]
    assert "feedback callback broken failed" in caplog.text and "observer bug" in caplog.text


def test_entries_are_append_only(fb: FeedbackLoop, tmp_path: Path) -> None:
    fb.record_success("m", "op1")
    conn = sqlite3.connect(tmp_path / "learning.db")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE feedback_entries SET score = 0")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM feedback_entries")


def _finished_run(store: LearningStore, run_id: str) -> None:
    store.start_run("add", "Python/General", "small", run_id=run_id)
    store.finish_run(run_id, RunResult("medium", 3, 100.0, "success", models_tried=("small", "medium")))


def test_rating_a_run_rates_the_model_it_ended_on(tmp_path: Path) -> None:
    store, fb = open_loop(tmp_path / "l.db")
    with store:
        _finished_run(store, "a1b2c3d4e5f6")
        _finished_run(store, "a1b2c3ffffff")
        entry = fb.rate_run("a1b2c3d4", 4, "good")
        assert (entry.agent_id, entry.operation_id, entry.type, entry.score) == ("medium", "a1b2c3d4e5f6:3",
                                                                                   "user_rating", 0.75)
        assert entry.context == {"domain": "Python/General", "task": "add", "run_id": "a1b2c3d4e5f6",
                                 "outcome": "success"}
        with pytest.raises(UsageError, match="ambiguous"):
            fb.rate_run("a1b2c3", 4)
        with pytest.raises(UsageError, match="no run with id 'zzz'"):
            fb.rate_run("zzz", 4)
        store.start_run("add", "Python/General", "small", run_id="running1")
        with pytest.raises(UsageError, match="still running"):
            fb.rate_run("running1", 4)
        with pytest.raises(UsageError, match="rating 9 is not allowed"):
            fb.rate_run("a1b2c3ffffff", 9)


def test_summary_of_an_agent(fb: FeedbackLoop) -> None:
    for i in range(3):
        fb.record_success("m", f"op{i}", score=0.9, source="test", context={"domain": "Audio/DSP"})
    fb.record_failure("m", "op9", error_type="LOGIC", source="test", context={"domain": "Audio/DSP"})
    fb.record_quality_score("m", "op9", 0.5)
    fb.record_success("other", "op1")
    s = fb.summary("m")
    assert (s.entries, s.success_rate, s.by_source, s.by_domain) == (5, 0.75, {"guardian": 1, "test": 4},
                                                                     {"-": 1, "Audio/DSP": 4})
    assert s.by_type["success"].mean == pytest.approx(0.9) and s.by_type["quality_score"].count == 1
    assert fb.require_agent("m") == "m"
    with pytest.raises(UsageError, match=r"no feedback recorded for agent 'x' \(agents with feedback: m, other\)"):
        fb.require_agent("x")
