"""improvement_proposals: patterns, learnings, opportunities, plans; LOW/MEDIUM applied, HIGH/CRITICAL for approval."""

from __future__ import annotations

import pytest

from kisystem.improve.plans import MoveStartModel, SetStoploss, SetTimeout
from kisystem.schedule.jobs.improvement_proposals import improvement_proposals
from tests.schedule.jobs.support import CPP, PY, Db, Iter


@pytest.fixture
def db(tmp_path):
    db = Db(tmp_path / "home")
    yield db
    db.close()


def smelly_small(db: Db) -> None:
    """Static analysis found something in every one of small's Python answers: a code smell (MEDIUM)."""
    for i in range(4):
        db.feedback.record_quality_score("small", f"q{i}", 0.9, source="guardian", context={"domain": PY})


def failing_big(db: Db) -> None:
    """big keeps failing C++ tasks the same way: an error pattern (HIGH)."""
    for i in range(4):
        db.feedback.record_failure("big", f"f{i}", {"rule": "build.undefined", "signature": "undefined"},
                                   "COMPILATION", source="test", context={"domain": CPP})


def slow_small(db: Db) -> None:
    """Python tasks that small fails twice (50 s each) before big solves them."""
    for i in range(4):
        db.run(f"t{i}", [Iter("small", "LOGIC", gen_s=50), Iter("small", "LOGIC", gen_s=50), Iter("big", gen_s=20)])


def test_medium_plans_are_applied_and_kept_high_ones_wait_for_approval(db):
    slow_small(db)
    smelly_small(db)
    failing_big(db)

    result = improvement_proposals(db.ctx())

    assert result.status == "success"
    r = result.result
    assert r["patterns"] >= 1 and len(r["pattern_ids"]) == r["patterns"] and r["learnings"] >= 1
    found = {(o["type"], o["agent"], o["domain"]): o["severity"] for o in r["opportunities"]}
    assert found[("code_smell", "small", PY)] == "MEDIUM" and found[("error_pattern", "big", CPP)] == "HIGH"
    assert found[("performance_degradation", "small", PY)] == "MEDIUM"  # 50 s answers, SLA 30 s
    assert r["validation"] == "routing replay of 4 tasks of the learning database's last 90 days"
    timeout, kept = r["applied_kept"]
    (waiting,) = r["awaiting_approval"]
    assert r["rolled_back"] == []
    with db.versions() as versions:
        assert versions.plan(timeout).changes == (SetTimeout("small", 45.0),)  # cuts the slowest answers
        assert versions.plan(kept).changes == (MoveStartModel(PY, "big"),)  # starting on big saves small's 2 x 51 s
        assert versions.plan(waiting).changes == (SetStoploss("big", 1),)
        assert versions.plan(waiting).opportunity.type == "error_pattern"
        active = versions.active()
    assert active is not None and active.overlay.routes[PY].start == "big"
    assert "kept" in next(p["detail"] for p in r["plans"] if p["id"] == kept)


def test_a_second_run_does_not_propose_the_same_again(db):
    slow_small(db)
    smelly_small(db)
    failing_big(db)
    improvement_proposals(db.ctx())
    db.clock.advance(minutes=5)

    again = improvement_proposals(db.ctx()).result

    assert again["plans"] == [] and again["planned_lately"] >= 1
    with db.versions() as versions:
        assert len(versions.plans()) == 3  # the first run's: timeout, start model, stop-loss (awaiting)


def test_without_recorded_outcomes_only_plans_for_approval_are_stored(db):
    smelly_small(db)
    failing_big(db)

    r = improvement_proposals(db.ctx()).result

    assert r["validation"].startswith("no recorded outcomes")
    assert r["not_applied_unvalidated"] == 1  # the code smell: nothing to validate its plan on
    assert r["applied_kept"] == [] and len(r["awaiting_approval"]) == 1
    with db.versions() as versions:
        assert versions.active() is None


def test_nothing_recorded_is_skipped(db):
    result = improvement_proposals(db.ctx())
    assert result.status == "skipped"
    assert result.reason == "no feedback patterns and no opportunities in the last 7 days"
