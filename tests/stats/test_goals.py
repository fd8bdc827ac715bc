"""The Phase 7 goals table: each figure from the database beside the guide's target, with its status."""

from __future__ import annotations

from pathlib import Path

import pytest

from kisystem.stats import Window, collect
from kisystem.stats.goals import ABOVE_RANGE, MET, NO_DATA, NOT_MEASURED, NOT_MET, PROFILING, SELECTION, Target
from tests.stats.support import Db, Step, bias_history, fill, guide_queue, profiled_run

GUIDE_TARGETS = [("Model Selection Accuracy", ">70%", "Meta-Bias hit rate"),
                 ("Profiling Time Reduction", "40-55%", "Two-Tier stats"),
                 ("Task Efficiency", "+30%", "Cost-Aware ROI"),
                 ("Error Recovery", "+25%", "Stop-Loss vs Phase 6"),
                 ("Learning Speed", "Better recency", "Exponential aging")]  # fmt: skip


@pytest.fixture
def db(tmp_path: Path):
    db = Db(tmp_path / "learning.db")
    yield db
    db.close()


def test_targets_as_the_guide_words_them() -> None:
    assert [SELECTION.status(v) for v in (None, 0.70, 0.7001)] == [NO_DATA, NOT_MET, MET]  # "> 70 %" is strict
    assert [PROFILING.status(v) for v in (0.39, 0.40, 0.55, 0.56)] == [NOT_MET, MET, MET, ABOVE_RANGE]
    assert [Target("+30%", 0.30).status(v) for v in (0.29, 0.30, -0.5)] == [NOT_MET, MET, NOT_MET]


def goals_by_name(db: Db) -> dict:
    report = collect(db.store, Window(db.clock()))
    assert [(g.metric, g.target, g.how) for g in report.goals] == GUIDE_TARGETS
    return {g.metric: g for g in report.goals}


def test_every_goal_computed_from_a_filled_database(db: Db) -> None:
    bias_history(db)
    profiled_run(db)
    fill(db)
    guide_queue(db)
    db.clock.at(2 * 3600)
    goals = goals_by_name(db)
    selection = goals["Model Selection Accuracy"]
    assert (selection.value, selection.status) == (0.5, NOT_MET)  # 1 hit of 2 followed
    assert selection.shown == "50% (1 of 2 runs)"
    profiling = goals["Profiling Time Reduction"]
    assert profiling.value == pytest.approx(20 / 36) and profiling.status == ABOVE_RANGE
    efficiency = goals["Task Efficiency"]
    assert efficiency.value == pytest.approx(196_500 / 188_700 - 1) and efficiency.status == NOT_MET
    recovery = goals["Error Recovery"]
    assert (recovery.value, recovery.status, recovery.shown) == (0.5, MET, "50% (1 of 2 runs)")
    assert goals["Learning Speed"].status == NOT_MEASURED and goals["Learning Speed"].value is None


def test_an_empty_database_says_no_data_for_every_goal_never_zero(db: Db) -> None:
    goals = goals_by_name(db)
    measured = [g for g in goals.values() if g.status != NOT_MEASURED]
    assert len(measured) == 4
    for goal in measured:
        assert goal.value is None and goal.status == NO_DATA
        assert goal.shown.startswith("no data yet (needs ") and goal.to_dict()["no_data"] == goal.shown
    recovery = goals["Error Recovery"].shown
    assert recovery == "no data yet (needs runs escalated to another model after a failed iteration)"


def test_profiling_without_a_full_profile_has_no_saving_to_price(db: Db) -> None:
    quick = {"tier": 0, "tier0_s": 2.0, "tier1_s": 0.0}
    db.run([Step("small", "ok", profile=quick)], "success")
    goal = goals_by_name(db)["Profiling Time Reduction"]
    assert goal.value is None and goal.status == NO_DATA
