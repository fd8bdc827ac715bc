"""detect_patterns: each of the five types from constructed feedback, and nothing below the thresholds."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from kisystem.improve.feedback import FeedbackLoop
from kisystem.improve.patterns import trend
from tests.improve.support import Clock, open_loop

CPP, PY = "C++/System", "Python/General"
QWEN = "qwen2.5-coder-0.5b"
LINK = {"rule": "ld.undefined_reference", "signature": "ld.undefined_reference:abc", "hint": "Link the library"}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fb(tmp_path: Path, clock: Clock):
    store, loop = open_loop(tmp_path / "learning.db", clock)
    with store:
        yield loop


def fail(fb: FeedbackLoop, n: int, *, agent: str = QWEN, domain: str = CPP, error_type: str = "COMPILATION",
         details: dict | None = None, source: str = "test", run: str | None = None) -> None:
    for i in range(n):
        context = {"domain": domain, **({"run_id": run} if run else {})}
        fb.record_failure(agent, f"{run or 'r'}{i}:1", details or LINK, error_type, source=source, context=context)


def succeed(fb: FeedbackLoop, n: int, *, agent: str = QWEN, domain: str = CPP, score: float = 1.0) -> None:
    for i in range(n):
        fb.record_success(agent, f"s{i}:1", score=score, source="test", context={"domain": domain})


def of_type(patterns, pattern_type: str, kind: str | None = None):
    return [p for p in patterns if p.pattern_type == pattern_type and (kind is None or p.kind == kind)]


def test_failure_pattern_reads_like_the_issue(fb: FeedbackLoop) -> None:
    fail(fb, 5)
    succeed(fb, 1)
    [p] = of_type(fb.detect_patterns(), "failure")
    assert p.description == (f"{QWEN} fails C++/System tasks with COMPILATION `undefined reference` 5 of 6 times "
                             "this week (test results)")
    assert (p.frequency, p.total, p.confidence, p.domain, p.agent_id) == (5, 6, pytest.approx(5 / 6), CPP, QWEN)
    assert p.details["hint"] == "Link the library" and len(p.details["operations"]) == 5
    assert p.id is not None and fb.patterns(QWEN)[0].id == p.id


@pytest.mark.parametrize("failures, successes", [(2, 0), (3, 3)])  # frequency 2 < 3; confidence 0.5 < 0.6
def test_no_failure_pattern_below_the_thresholds(fb: FeedbackLoop, failures: int, successes: int) -> None:
    fail(fb, failures)
    succeed(fb, successes)
    assert of_type(fb.detect_patterns(), "failure") == []


def test_thresholds_come_from_config(tmp_path: Path) -> None:
    store, fb = open_loop(tmp_path / "l.db", pattern_min_frequency=2, pattern_min_confidence=0.5)
    with store:
        fail(fb, 2)
        succeed(fb, 2)
        assert [p.frequency for p in of_type(fb.detect_patterns(), "failure")] == [2]


def test_only_the_lookback_window_counts(fb: FeedbackLoop, clock: Clock) -> None:
    fail(fb, 2)
    clock.now += timedelta(days=8)
    fail(fb, 2)
    assert of_type(fb.detect_patterns(), "failure") == []  # 2 this week, 2 the week before
    [p] = of_type(fb.detect_patterns(lookback_days=9), "failure")
    assert p.frequency == 4 and "4 of 4 times in the last 9 days" in p.description


def test_sources_are_not_mixed(fb: FeedbackLoop) -> None:
    fail(fb, 3, source="test")
    fail(fb, 3, source="system")
    found = of_type(fb.detect_patterns(), "failure")
    assert sorted((p.details["source"], p.frequency, p.total) for p in found) == [("system", 3, 3), ("test", 3, 3)]


def test_errors_are_told_apart(fb: FeedbackLoop) -> None:
    fail(fb, 3)
    fail(fb, 3, error_type="LOGIC", details={"rule": "python.assertion_error"})
    [several] = of_type(fb.detect_patterns(), "failure")  # 3 of 6 each is below 0.6; 6 of 6 in all
    assert (several.kind, several.frequency, several.total) == ("several_errors", 6, 6)
    assert several.description == (f"{QWEN} fails C++/System tasks 6 of 6 times this week (test results) with 2 "
                                   "different errors")
    fail(fb, 3)
    assert {p.kind: (p.frequency, p.total) for p in of_type(fb.detect_patterns(), "failure")} == {
        "failure": (6, 9), "several_errors": (9, 9)}


def test_success_pattern(fb: FeedbackLoop) -> None:
    succeed(fb, 4, domain=PY, score=0.9)
    fail(fb, 1, domain=PY)
    [p] = of_type(fb.detect_patterns(), "success")
    assert p.description == (f"{QWEN} succeeds at Python/General tasks 4 of 5 times this week (test results), "
                             "mean score 0.90")
    assert p.confidence == pytest.approx(0.8)
    fail(fb, 2, domain=PY)
    assert of_type(fb.detect_patterns(), "success") == []  # 4 of 7 < 0.6


def test_quality_patterns_low_and_declining(fb: FeedbackLoop) -> None:
    for i, score in enumerate((0.9, 0.85, 0.7, 0.6, 0.5)):
        fb.record_quality_score(QWEN, f"q{i}", score, context={"domain": CPP})
    found = fb.detect_patterns()
    [low] = of_type(found, "quality", "low")
    assert (low.frequency, low.total, low.confidence) == (3, 5, pytest.approx(0.6))
    [declining] = of_type(found, "quality", "declining")
    assert declining.confidence == 1.0 and "is declining" in declining.description
    assert of_type(found, "quality", "high") == []  # 2 of 5


def test_no_quality_trend_in_noise(fb: FeedbackLoop) -> None:
    for i, score in enumerate((0.9, 0.82, 0.9, 0.84, 0.9, 0.83)):
        fb.record_quality_score(QWEN, f"q{i}", score)
    found = fb.detect_patterns()
    assert [p.kind for p in of_type(found, "quality")] == ["high"]


def test_trend_confidence_is_the_share_of_pairs_that_agree() -> None:
    assert trend([0.9, 0.8, 0.7, 0.6]) == ("declining", 1.0, pytest.approx(-0.2))
    direction, confidence, _ = trend([0.2, 0.5, 0.4, 0.8])  # 5 of 6 pairs go up
    assert (direction, confidence) == ("improving", pytest.approx(5 / 6))
    assert trend([0.5, 0.52, 0.5, 0.51]) is None


def test_performance_patterns_slow_and_regression(fb: FeedbackLoop) -> None:
    for i, (score, regression) in enumerate(((0.3, False), (0.4, True), (0.38, True), (0.45, True))):
        fb.record_feedback(QWEN, f"p{i}", "performance", score, {"regression": regression}, "system",
                           {"domain": CPP})
    found = fb.detect_patterns()
    assert {p.kind: (p.frequency, p.total) for p in of_type(found, "performance")} == {
        "slow": (4, 4), "regression": (3, 4), "improving": (4, 4)}
    assert of_type(found, "performance", "fast") == []


def test_behavior_pattern_repeats_the_same_error(fb: FeedbackLoop) -> None:
    for run in ("run1", "run2"):
        fail(fb, 3, run=run)  # the same signature three times in a run: two retries that repeat it
    [p] = of_type(fb.detect_patterns(), "behavior")
    assert (p.frequency, p.total, p.confidence) == (4, 4, 1.0)
    assert p.description.startswith(f"{QWEN} repeats the same error after feedback on C++/System tasks 4 of 4")


def test_no_behavior_pattern_when_the_errors_change(fb: FeedbackLoop) -> None:
    for run in ("run1", "run2", "run3"):
        for i, rule in enumerate(("cc.error", "ld.failed", "python.type_error")):
            fb.record_failure(QWEN, f"{run}:{i}", {"rule": rule}, "COMPILATION", source="test",
                              context={"domain": CPP, "run_id": run})
    assert of_type(fb.detect_patterns(), "behavior") == []


def test_detected_again_updates_the_stored_pattern(fb: FeedbackLoop) -> None:
    fail(fb, 3)
    [first] = of_type(fb.detect_patterns(), "failure")
    fail(fb, 2)
    [again] = of_type(fb.detect_patterns(), "failure")
    assert again.id == first.id and again.frequency == 5
    assert [p.frequency for p in of_type(fb.patterns(), "failure")] == [5]


def test_one_agent_or_all(fb: FeedbackLoop) -> None:
    fail(fb, 3)
    fail(fb, 3, agent="other")
    assert {p.agent_id for p in fb.detect_patterns()} == {QWEN, "other"}
    assert {p.agent_id for p in fb.detect_patterns(QWEN)} == {QWEN}
