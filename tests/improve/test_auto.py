"""Copy-on-write auto-optimization validated by replaying recorded outcomes: kept only when better."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kisystem.bench.routing import OutcomeTable
from kisystem.config import HybridDecisionWeights, OptimizationConfig
from kisystem.errors import UsageError
from kisystem.improve.auto import UNREPLAYED, Validation, apply_plan, approve, auto_optimize, reject
from kisystem.improve.overlay import Overlay
from kisystem.improve.plans import (
    Opportunity,
    Plan,
    SetChain,
    SetContextTokens,
    SetMaxTokens,
    SetTimeout,
    SetTwoTierThresholds,
    Severity,
    Strategy,
)
from kisystem.improve.validate import ReplayValidator
from kisystem.improve.versions import OptimizationStore, PlanRefused, UnknownPlan, apply_active
from tests.improve.optimize_support import (
    PY,
    SLOW_BUT_RIGHT,
    SLOW_FAILURES,
    SMALL_GOOD,
    SMALL_USELESS,
    declining,
    fleet,
    slow,
    spec,
)

CONFIG = OptimizationConfig()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[OptimizationStore]:
    with OptimizationStore.open(tmp_path / "learning.db") as opened:
        yield opened


def validator(table) -> ReplayValidator:
    return ReplayValidator(table, {t: spec(t) for t in table.tasks})


def test_a_change_worse_on_replay_is_rolled_back_and_the_active_configuration_stays(store) -> None:
    # small is slow (50 s) but right: cutting its timeout to 45 s sends every task to big.
    [outcome] = auto_optimize(store, CONFIG, fleet(), [slow()], Strategy.AUTO, validator(SLOW_BUT_RIGHT))
    assert outcome.plan.changes == (SetTimeout("small", 45.0),)
    assert outcome.plan.status == "rolled_back" and not outcome.kept
    assert outcome.result.before == {"tasks": 4, "solved": 4, "model_seconds": 204.0}
    assert outcome.result.after["model_seconds"] > 204.0
    assert "rolled back: not better" in outcome.result.detail
    [version] = store.versions()
    assert (version.id, version.state, version.active, version.plan) == (outcome.result.version, "rolled_back",
                                                                         False, outcome.plan.id)
    assert store.active() is None
    config, inventory = apply_active(CONFIG, fleet(), store)
    assert inventory.models["small"].timeout_s == 60.0 and config == CONFIG


def test_a_change_better_on_replay_is_kept_versioned_and_applied(store) -> None:
    # small fails slowly on half the tasks: a 45 s timeout saves seconds and loses no task.
    [outcome] = auto_optimize(store, CONFIG, fleet(), [slow()], Strategy.AUTO, validator(SLOW_FAILURES))
    assert outcome.plan.status == "applied_kept" and outcome.kept
    assert (outcome.result.before["solved"], outcome.result.after["solved"]) == (4, 4)
    assert outcome.result.after["model_seconds"] < outcome.result.before["model_seconds"]
    active = store.active()
    assert active is not None and (active.id, active.parent, active.state) == (outcome.result.version, None, "kept")
    assert store.results(outcome.plan.id) == [outcome.result]
    _, inventory = apply_active(CONFIG, fleet(), store)
    assert inventory.models["small"].timeout_s == 45.0  # what the next run uses


def test_a_worse_change_leaves_an_earlier_kept_version_active(store) -> None:
    [kept] = auto_optimize(store, CONFIG, fleet(), [slow()], Strategy.AUTO, validator(SLOW_FAILURES))
    worse = store.add_plan(Plan(declining(), Strategy.AUTO, (SetChain(PY, ("big", "small")),), "start on big",
                                "tasks_solved"))
    outcome = apply_plan(store, CONFIG, fleet(), worse, validator(SMALL_GOOD))
    assert outcome.plan.status == "rolled_back"
    assert store.active().id == kept.result.version
    assert store.version(outcome.result.version).parent == kept.result.version  # copied from the active one
    _, inventory = apply_active(CONFIG, fleet(), store)
    assert inventory.route(PY).chain == ("small", "big") and inventory.models["small"].timeout_s == 45.0


def test_a_high_severity_plan_is_not_applied_until_approved(store) -> None:
    check = validator(SMALL_USELESS)
    [waiting] = auto_optimize(store, CONFIG, fleet(), [declining()], Strategy.AUTO, check)
    assert waiting.plan.status == "awaiting_approval" and waiting.result is None
    assert store.versions() == [] and store.active() is None
    assert apply_active(CONFIG, fleet(), store)[1].route(PY).start == "small"

    outcome = approve(store, waiting.plan.id, CONFIG, fleet(), check)
    assert outcome.plan.status == "applied_kept"
    assert outcome.result.detail.startswith("approved; kept: better")
    assert apply_active(CONFIG, fleet(), store)[1].route(PY).chain == ("big", "small")
    with pytest.raises(PlanRefused, match="applied_kept, not awaiting_approval"):
        approve(store, waiting.plan.id, CONFIG, fleet(), check)


def test_an_approved_plan_worse_on_replay_is_still_rolled_back(store) -> None:
    [waiting] = auto_optimize(store, CONFIG, fleet(), [declining()], Strategy.AUTO, validator(SMALL_GOOD))
    outcome = approve(store, waiting.plan.id, CONFIG, fleet(), validator(SMALL_GOOD))
    assert outcome.plan.status == "rolled_back" and store.active() is None


def token_plan(store: OptimizationStore, *changes) -> Plan:
    opp = Opportunity("quality_issues", Severity.MEDIUM, "small", PY, {"cause": "answers cut at max_tokens"})
    return store.add_plan(Plan(opp, Strategy.AUTO, changes, "longer answers", "tasks_solved"), "awaiting_approval")


def never(before, after) -> Validation:
    raise AssertionError("no replay can judge a max_tokens or num_ctx plan")


def test_an_approved_token_plan_no_replay_can_judge_is_kept_on_the_approval(store) -> None:
    waiting = token_plan(store, SetMaxTokens("small", 640), SetContextTokens("small", 4096))
    outcome = approve(store, waiting.id, CONFIG, fleet(), never)
    assert outcome.plan.status == "applied_kept" and outcome.kept
    assert outcome.result.detail == f"approved; {UNREPLAYED}"
    small = apply_active(CONFIG, fleet(), store)[1].models["small"]
    assert (small.max_tokens, small.context_tokens) == (640, 4096)
    again = token_plan(store, SetMaxTokens("small", 1024))  # without outcomes to replay: none is needed
    assert approve(store, again.id, CONFIG, fleet(), None).kept
    assert apply_active(CONFIG, fleet(), store)[1].models["small"].max_tokens == 1024


def test_an_approved_token_plan_that_does_not_fit_is_rolled_back(store) -> None:
    waiting = token_plan(store, SetMaxTokens("small", 10**6))
    outcome = approve(store, waiting.id, CONFIG, fleet(), None)
    assert outcome.plan.status == "rolled_back" and store.active() is None
    assert "does not fit" in outcome.result.detail and "max_tokens 1000000 is not an integer" in outcome.result.detail


def test_a_replayable_plan_needs_a_validator_to_be_approved(store) -> None:
    [waiting] = auto_optimize(store, CONFIG, fleet(), [declining()], Strategy.AUTO, validator(SMALL_USELESS))
    with pytest.raises(UsageError, match=f"plan {waiting.plan.id} is validated by a replay"):
        approve(store, waiting.plan.id, CONFIG, fleet(), None)
    assert store.plan(waiting.plan.id).status == "awaiting_approval"


def test_a_rejected_plan_is_never_applied(store) -> None:
    [waiting] = auto_optimize(store, CONFIG, fleet(), [declining()], Strategy.AUTO, validator(SMALL_USELESS))
    assert reject(store, waiting.plan.id).status == "rejected"
    with pytest.raises(PlanRefused, match="rejected"):
        approve(store, waiting.plan.id, CONFIG, fleet(), validator(SMALL_USELESS))
    assert store.versions() == []
    with pytest.raises(UnknownPlan):
        reject(store, 99)


def test_a_version_is_not_kept_when_the_active_one_changed_during_validation(store) -> None:
    other = store.add_version(Overlay(), None, "made elsewhere")

    def meanwhile_activates(before, after) -> Validation:
        store.activate(other.id, "another process")
        return Validation("m", {}, {}, True, "better")

    plan = store.add_plan(Plan(slow(), Strategy.AUTO, (SetTimeout("small", 45.0),), "e", "model_seconds"))
    outcome = apply_plan(store, CONFIG, fleet(), plan, meanwhile_activates)
    assert outcome.plan.status == "rolled_back"
    assert "changed during validation" in outcome.result.detail
    assert store.active().id == other.id


def test_a_plan_naming_a_model_the_inventory_lacks_is_rolled_back(store) -> None:
    plan = store.add_plan(Plan(slow(), Strategy.AUTO, (SetChain(PY, ("ghost",)),), "e", "tasks_solved"))
    outcome = apply_plan(store, CONFIG, fleet(), plan, validator(SLOW_FAILURES))
    assert outcome.plan.status == "rolled_back"
    assert "does not fit" in outcome.result.detail and "ghost" in outcome.result.detail
    assert store.version(outcome.result.version).state == "rolled_back" and store.active() is None


def test_each_kept_plan_builds_on_the_one_before(store) -> None:
    # COMPREHENSIVE on a slow model: timeout cut (kept), then dropping small from the chain.
    outcomes = auto_optimize(store, CONFIG, fleet(), [slow()], Strategy.COMPREHENSIVE, validator(SLOW_FAILURES))
    assert [o.plan.describe() for o in outcomes] == ["timeout of small: 45 s", f"{PY}: chain big"]
    assert [o.plan.status for o in outcomes] == ["applied_kept", "applied_kept"]
    first, second = (store.version(o.result.version) for o in outcomes)
    assert second.parent == first.id and store.active().id == second.id
    _, inventory = apply_active(CONFIG, fleet(), store)
    assert inventory.route(PY).chain == ("big",) and inventory.models["small"].timeout_s == 45.0


def test_the_replay_skips_a_model_without_recorded_outcomes_and_says_so(store) -> None:
    samples = {t: {m: SMALL_USELESS.samples[t][m] for m in ("small", "big")} for t in SMALL_USELESS.tasks}
    recorded = OutcomeTable.one_domain(PY, ("small", "big"), samples)
    plan = store.add_plan(Plan(declining(), Strategy.AUTO, (SetChain(PY, ("huge", "big")),), "e", "tasks_solved"))
    outcome = apply_plan(store, CONFIG, fleet(), plan, validator(recorded))
    assert outcome.plan.status == "applied_kept"  # big alone beats small then big
    assert f"no recorded outcomes, skipped: huge in {PY}" in outcome.result.detail


def test_a_change_the_replay_cannot_see_is_not_kept(store) -> None:
    # Profiling is not replayed: a build/test resource opportunity's two-tier change shows no difference.
    opportunity = Opportunity("resource_inefficiency", Severity.MEDIUM, "build", None, {"peak_mb": 900})
    [outcome] = auto_optimize(store, CONFIG, fleet(), [opportunity], Strategy.AUTO, validator(SLOW_FAILURES))
    assert outcome.plan.changes == (SetTwoTierThresholds(10.0, 10),)
    assert outcome.plan.status == "rolled_back" and outcome.result.before == outcome.result.after
    assert store.active() is None


def test_hybrid_weights_change_the_replayed_routing() -> None:
    # A LOGIC failure on small: with 0.6 on the failure state the floor lifts the task to big at once.
    check = validator(SMALL_USELESS)
    lifted = replace(CONFIG, hybrid_decision_weights=HybridDecisionWeights(0.1, 0.3, 0.6))
    assert check.figures(lifted, fleet()).model_seconds < check.figures(CONFIG, fleet()).model_seconds
