"""generate_learnings: the five learning types from patterns; lessons_for: a short, bounded text."""

from __future__ import annotations

from pathlib import Path

import pytest

from kisystem.improve.feedback import DEFAULT_LESSON_CHARS, FeedbackLoop
from kisystem.improve.learnings import LESSONS_HEADER, impact
from tests.improve.support import open_loop

CPP, PY = "C++/System", "Python/General"
QWEN = "qwen2.5-coder-0.5b"
LINK = {"rule": "ld.undefined_reference", "signature": "ld:1", "hint": "Link the library that defines the symbol"}
ASSERT = {"rule": "python.assertion_error", "signature": "py:2", "hint": "Check the expected values"}


@pytest.fixture
def fb(tmp_path: Path):
    store, loop = open_loop(tmp_path / "learning.db")
    with store:
        yield loop


def fail(fb: FeedbackLoop, n: int, details: dict, error_type: str, *, domain: str = CPP, run: str = "r",
         agent: str = QWEN, source: str = "test") -> None:
    for i in range(n):
        fb.record_failure(agent, f"{run}:{i}", details, error_type, source=source,
                          context={"domain": domain, "run_id": run})


def by_type(learnings, learning_type: str):
    return [item for item in learnings if item.learning_type == learning_type]


def test_error_avoidance_from_a_failure_pattern(fb: FeedbackLoop) -> None:
    for run in ("a", "b", "c", "d", "e"):
        fail(fb, 1, LINK, "COMPILATION", run=run)
    fb.record_success(QWEN, "f:1", source="test", context={"domain": CPP})
    learnings = fb.generate_learnings(QWEN)
    [item] = by_type(learnings, "error_avoidance")
    [pattern] = [p for p in fb.patterns(QWEN) if p.pattern_type == "failure"]
    assert item.title == "Avoid COMPILATION `undefined reference` on C++/System"
    assert item.description == ("5 of 6 earlier attempts failed with it. "
                                "Hint: Link the library that defines the symbol.")
    assert item.pattern_ids == (pattern.id,) and item.domain == CPP and item.id is not None
    assert item.impact == impact(5 / 6, 5) == pytest.approx(5 / 6 * 0.5, abs=1e-4)


def test_every_learning_type(fb: FeedbackLoop) -> None:
    fail(fb, 3, LINK, "COMPILATION", run="r1")  # repeats within one run: behavior too
    fail(fb, 3, ASSERT, "LOGIC", run="r2")
    fail(fb, 3, LINK, "COMPILATION", run="r3")
    for i in range(4):
        fb.record_success(QWEN, f"ok{i}", source="test", context={"domain": PY})
        fb.record_quality_score(QWEN, f"q{i}", 0.5, context={"domain": PY})
    learnings = fb.generate_learnings(QWEN)
    kinds = {item.learning_type for item in learnings}
    assert kinds == {"error_avoidance", "positive_reinforcement", "optimization", "pattern_recognition",
                     "skill_enhancement"}
    [gap] = by_type(learnings, "skill_enhancement")  # 9 of 9 failed, in two ways
    assert gap.title == f"{QWEN} lacks skill on C++/System"
    assert gap.description.startswith("9 of 9 attempts failed in 2 different ways (COMPILATION `undefined "
                                      "reference`, LOGIC `assertion error`)")
    stored = {p.id: p for p in fb.patterns(QWEN)}
    assert sorted(stored[i].kind for i in gap.pattern_ids) == ["failure", "several_errors"]  # + the LINK one
    [reinforce] = by_type(learnings, "positive_reinforcement")
    assert reinforce.domain == PY and "4 of 4" in reinforce.description
    [optimize] = by_type(learnings, "optimization")
    assert optimize.title == "Improve quality score on Python/General"
    [behavior] = by_type(learnings, "pattern_recognition")
    assert "retries repeated the previous error" in behavior.description
    assert all(0 <= item.impact <= 1 and item.pattern_ids for item in learnings)
    assert [item.impact for item in learnings] == sorted((item.impact for item in learnings), reverse=True)


def test_no_patterns_no_learnings(fb: FeedbackLoop) -> None:
    fail(fb, 2, LINK, "COMPILATION")
    assert fb.generate_learnings(QWEN) == []
    assert fb.lessons_for(CPP, QWEN) == ""


def test_learnings_are_updated_not_duplicated(fb: FeedbackLoop) -> None:
    fail(fb, 3, LINK, "COMPILATION", run="x")
    [first] = by_type(fb.generate_learnings(QWEN), "error_avoidance")
    fail(fb, 3, LINK, "COMPILATION", run="y")
    [again] = by_type(fb.generate_learnings(QWEN), "error_avoidance")
    assert again.id == first.id and again.impact > first.impact
    assert len(by_type(fb.learnings(QWEN), "error_avoidance")) == 1


def test_lessons_for_a_domain_and_model_are_bounded(fb: FeedbackLoop) -> None:
    fail(fb, 6, LINK, "COMPILATION", run="r1")
    fail(fb, 3, ASSERT, "LOGIC", run="r2")
    fail(fb, 3, LINK, "COMPILATION", run="r5", source="system")  # the same lesson from another source
    fail(fb, 3, LINK, "COMPILATION", domain=PY, run="r3")  # another domain
    fail(fb, 3, LINK, "COMPILATION", agent="other", run="r4")  # another model
    for i in range(3):
        fb.record_quality_score(QWEN, f"q{i}", 0.9, context={"domain": CPP})
    learnings = fb.generate_learnings()
    assert by_type(learnings, "positive_reinforcement") and len(by_type(learnings, "error_avoidance")) == 4
    text = fb.lessons_for(CPP, QWEN, 2000)
    lines = text.splitlines()
    assert lines[0] == LESSONS_HEADER
    assert any("`undefined reference`" in line for line in lines)
    assert any("`assertion error`" in line for line in lines)
    assert not any("does well" in line for line in lines)  # positive reinforcement teaches the model nothing
    assert len([line for line in lines if line.startswith("- Avoid COMPILATION")]) == 1  # one per title
    assert fb.lessons_for(PY, QWEN, 2000).count("- Avoid") == 1
    assert fb.lessons_for("Audio/DSP", QWEN, 2000) == ""
    for limit in (0, 20, 60, 120, 200, len(text)):
        bounded = fb.lessons_for(CPP, QWEN, limit)
        assert len(bounded) <= limit and (bounded == "" or bounded.startswith(LESSONS_HEADER))
    assert fb.lessons_for(CPP, QWEN, len(text)) == text
    assert fb.lessons_for(CPP, QWEN, 120).endswith("...")  # the first lesson, cut, rather than none


def test_the_loops_teacher_draws_lessons_once_between_two_runs_ends(fb: FeedbackLoop) -> None:
    from kisystem.improve.teacher import Teacher
    from kisystem.loop.supervisor import LoopEvent

    fail(fb, 4, LINK, "COMPILATION", run="r1")  # recorded by earlier runs; no learnings generated yet
    forwarded: list[LoopEvent] = []
    teacher = Teacher(fb, forward=forwarded.append)
    lessons = teacher.lessons(CPP, QWEN)
    assert lessons.startswith(LESSONS_HEADER) and "`undefined reference`" in lessons
    assert len(lessons) <= DEFAULT_LESSON_CHARS
    assert teacher.lessons(CPP, "other-model") == ""
    assert teacher.lessons(CPP, QWEN) == lessons and teacher.drawn == 2  # the second ask of a run: kept
    fail(fb, 4, ASSERT, "LOGIC", run="r2")
    teacher(LoopEvent("score", "t", "r2", 1, QWEN, {}))
    assert "`assertion error`" not in teacher.lessons(CPP, QWEN)  # no run ended: nothing new learned yet
    teacher(LoopEvent("exit", "t", "r2", 1, QWEN, {"outcome": "failed"}))
    assert "`assertion error`" in teacher.lessons(CPP, QWEN) and teacher.drawn == 3
    assert [e.kind for e in forwarded] == ["score", "exit"]
