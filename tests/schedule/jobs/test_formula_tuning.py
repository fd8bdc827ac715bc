"""formula_tuning: the three formulas fitted to the recorded history by replay, the better fit kept copy-on-write."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kisystem.config import MetaSupervisorWeights, OptimizationConfig, TwoTierProfiling
from kisystem.improve.plans import SetHybridWeights, SetMetaWeights, SetTwoTierThresholds
from kisystem.improve.versions import apply_active
from kisystem.schedule.jobs.formula_tuning import (
    FormulaValidator,
    PriorityCase,
    Profiled,
    auc,
    fit_meta,
    formula_tuning,
    replay_profiles,
    simplex,
)
from tests.schedule.jobs.support import CPP, Db, Iter, py_spec


@pytest.fixture
def db(tmp_path):
    db = Db(tmp_path / "home")
    db.jobs(formula_min_runs=10)
    yield db
    db.close()


def profile(score: float, full: bool) -> dict:
    return {"ok": True, "tier": 1 if full else 0, "score": score, "regression": False, "tier0_s": 1.0,
            "tier1_s": 20.0 if full else 0.0}


def climbing(db: Db, name: str) -> None:
    """A run whose performance score climbs 3 points per iteration, fully profiled at 1 and 7 (streak 5)."""
    db.run(name, [Iter("big", profile=profile(50 + 3 * k, k in (1, 7))) for k in range(1, 9)])


def fill(db: Db) -> None:
    """Python tasks (specs queued) that small fails twice, slowly, and big then solves; C++ that always fails;
    two profiled runs."""
    for i in range(8):
        db.queue(py_spec(f"t{i}", "Write a function that sorts a list of numbers with a loop."), {})
        db.run(f"t{i}", [Iter("small", "LOGIC", gen_s=30), Iter("small", "LOGIC", gen_s=30), Iter("big", gen_s=20)])
    for i in range(4):
        db.run(f"c{i}", [Iter("big", "COMPILATION")], outcome="exhausted", domain=CPP)
    climbing(db, "p0")
    climbing(db, "p1")


def test_too_little_history_is_skipped_with_how_many_runs_it_has_and_needs(db):
    for i in range(4):
        db.run(f"t{i}", [Iter("small")])
    result = formula_tuning(db.ctx())
    assert result.status == "skipped"
    assert result.reason == "4 finished runs in the last 90 days; formula tuning needs at least 10"
    assert result.result == {"runs": 4, "needed": 10}


def test_the_better_fit_is_proposed_and_kept_copy_on_write(db):
    fill(db)

    result = formula_tuning(db.ctx())

    assert result.status == "success"
    r = result.result
    assert r["history"]["runs"] == 14 and r["history"]["tasks"] == 14 and r["history"]["profiled_runs"] == 2
    hybrid = r["hybrid_decision_weights"]
    assert hybrid["tasks"] == 8 and hybrid["grid"] == 66 and hybrid["better"] is True
    # lifting the task to big after small's first failure saves a 30 s answer (and its test) per task
    assert hybrid["current_figures"]["solved"] == hybrid["best_figures"]["solved"] == 8
    assert hybrid["current_figures"]["model_seconds"] - hybrid["best_figures"]["model_seconds"] == pytest.approx(8 * 31)
    two_tier = r["two_tier_profiling"]
    assert two_tier["current_figures"] == {"iterations": 16, "full": 4, "stale": 4, "seconds": 96.0}
    assert two_tier["best"] == {"score_change_threshold": 5.0, "max_tier0_streak": 3}
    assert two_tier["best_figures"]["stale"] == 0
    plan = r["plan"]
    assert plan["status"] == "applied_kept" and plan["kept"] is True and plan["severity"] == "LOW"
    assert "stale 4 -> 0" in plan["detail"]
    with db.versions() as versions:
        active = versions.active()
        assert versions.plan(plan["id"]).changes == (SetHybridWeights(*hybrid["best"].values()),
                                                     SetTwoTierThresholds(5.0, 3))
    assert active is not None and active.plan == plan["id"]
    assert active.overlay.settings["two_tier_profiling"] == {"score_change_threshold": 5.0, "max_tier0_streak": 3}
    assert "3 failed and 9 solved" in r["meta_supervisor_weights"]["skipped"]  # too few failures to fit P(d)


def test_a_second_run_fits_the_active_configuration_and_proposes_nothing(db):
    fill(db)
    formula_tuning(db.ctx())
    db.clock.advance(days=2)
    again = formula_tuning(db.ctx()).result
    assert again["hybrid_decision_weights"]["better"] is False
    assert again["two_tier_profiling"]["better"] is False
    assert again["plan"] is None


def test_without_stored_specs_or_profiles_those_parts_say_why(db):
    for i in range(12):
        db.run(f"t{i}", [Iter("small", "LOGIC"), Iter("big")])
    r = formula_tuning(db.ctx()).result
    assert "none of the 12 recorded tasks has a stored spec" in r["hybrid_decision_weights"]["skipped"]
    assert r["two_tier_profiling"] == {"skipped": "0 profiled iterations recorded; the profiling replay needs 5"}
    assert r["plan"] is None


def test_the_profiling_replay_counts_full_profiles_stale_iterations_and_seconds():
    run = [Profiled(k, 50 + 3 * k, False, 1.0, 20.0 if k in (1, 7) else None) for k in range(1, 9)]
    # threshold 5, streak 5: full at 1 and 7; 65 and 68 are more than 10 points from 53
    assert replay_profiles([run], TwoTierProfiling(5.0, 5), 10.0).key() == (2, 48.0)
    # streak 3: full at 1 and 5 (priced at the run's recorded 20 s); nothing drifts 10 points
    assert replay_profiles([run], TwoTierProfiling(5.0, 3), 10.0).key() == (0, 48.0)
    # threshold 2.5: every step of 3 points is a full profile
    assert replay_profiles([run], TwoTierProfiling(2.5, 5), 10.0).full == 8


def test_a_regression_is_always_profiled_fully():
    run = [Profiled(1, 50, False, 1.0, 10.0), Profiled(2, 50, True, 1.0, None)]
    assert replay_profiles([run], TwoTierProfiling(100.0, 100), 10.0).full == 2


def test_auc_and_the_meta_weights_fit():
    assert auc([0.1, 0.4, 0.5, 0.8], [False, True, False, True]) == 0.75  # 0.4 < 0.5: one pair of four wrong
    assert auc([0.5, 0.5], [True, False]) == 0.5
    assert auc([0.1, 0.2], [True, True]) is None
    # failures follow a recent error (R), not the failure rate: the fit moves weight to recency
    cases = [PriorityCase((0.1, 0.0, 0.5, 0.1), True), PriorityCase((0.9, 0.0, 0.5, -0.1), False)] * 3
    assert "needs at least 10 of each" in fit_meta(cases, MetaSupervisorWeights())["skipped"]  # 3 failed: noise
    cases *= 4
    fit = fit_meta(cases, MetaSupervisorWeights())
    assert fit["auc_current"] == 0.0 and fit["auc_best"] == 1.0 and fit["better"] is True
    assert fit["best"]["recency_weight"] > 0.1
    assert len(simplex(4)) == fit["grid"] == 286


def turning(db: Db) -> None:
    """Python solved at first, then failing; C++ failing at first, then solved: the failure rate so far
    misleads, a recent error tells (more recency weight ranks the failing runs higher)."""
    for i in range(8):
        db.run(f"p{i}", [Iter("small")])
        db.run(f"c{i}", [Iter("big", "COMPILATION")], outcome="exhausted", domain=CPP)
    for i in range(8, 14):
        db.run(f"p{i}", [Iter("small", "LOGIC"), Iter("big", "LOGIC")], outcome="exhausted")
        db.run(f"c{i}", [Iter("big")], domain=CPP)


def test_better_meta_weights_are_planned_kept_and_the_next_fit_starts_from_them(db):
    turning(db)

    r = formula_tuning(db.ctx()).result

    meta = r["meta_supervisor_weights"]
    assert meta["better"] is True and meta["planned"] is True and meta["auc_best"] - meta["auc_current"] >= 0.01
    plan = r["plan"]
    assert plan["status"] == "applied_kept" and plan["changes"] == [{"kind": "set_meta_weights", **meta["best"]}]
    assert plan["before"] == {"priority_auc": meta["auc_current"]}
    assert plan["after"] == {"priority_auc": meta["auc_best"]}
    with db.versions() as versions:
        assert versions.plan(plan["id"]).changes == (SetMetaWeights(*meta["best"].values()),)
        config, _ = apply_active(db.config, db.inventory, versions)
    assert config.meta_supervisor_weights == MetaSupervisorWeights(**meta["best"])  # what the loop's P(d) uses now

    db.clock.advance(days=2)
    again = formula_tuning(db.ctx()).result
    refit = again["meta_supervisor_weights"]
    assert refit["current"] == meta["best"] and refit["better"] is False
    assert again["plan"] is None


def test_meta_weights_worse_on_the_priority_replay_are_rolled_back():
    cases = [PriorityCase((0.1, 0.0, 0.5, 0.1), True), PriorityCase((0.9, 0.0, 0.5, -0.1), False)] * 3
    validator = FormulaValidator(None, (), 10.0, cases)
    recency = replace(OptimizationConfig(), meta_supervisor_weights=MetaSupervisorWeights(0.1, 0.1, 0.1, 0.7))
    worse = validator((recency, None), (OptimizationConfig(), None))
    assert worse.better is False and worse.before["priority_auc"] > worse.after["priority_auc"]
    better = validator((OptimizationConfig(), None), (recency, None))
    assert better.better is True and "AUC 0.0000 -> 1.0000" in better.detail
