"""Plans: typed changes on the overlay, and how the five strategies map opportunities to plans."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kisystem.config import OptimizationConfig
from kisystem.errors import UsageError
from kisystem.improve.overlay import Overlay, OverlayError
from kisystem.improve.plans import (
    CHANGE_TYPES,
    MoveStartModel,
    Opportunity,
    Plan,
    SetChain,
    SetContextTokens,
    SetHybridWeights,
    SetMaxTokens,
    SetMetaWeights,
    SetStoploss,
    SetTimeout,
    SetTwoTierThresholds,
    Severity,
    Strategy,
    change_from_json,
    change_to_json,
    plans_for,
)
from tests.improve.optimize_support import CPP, PY, declining, fleet, slow

CONFIG = OptimizationConfig()
EVERY_CHANGE = (MoveStartModel(PY, "big"), SetChain(CPP, ("huge", "big")), SetStoploss("small", 1),
                SetStoploss(None, 3), SetTimeout("big", 90.0), SetMaxTokens("small", 640),
                SetContextTokens("big", 8192), SetMetaWeights(0.4, 0.1, 0.2, 0.3), SetHybridWeights(0.3, 0.3, 0.4),
                SetTwoTierThresholds(10.0, 8))


def changes(strategy: Strategy, *opportunities: Opportunity) -> list[tuple]:
    return [p.changes for p in plans_for(opportunities, strategy, CONFIG, fleet())]


@pytest.mark.parametrize("strategy, expected", [
    # MINIMAL: only the HIGH opportunity, its mildest remedy (small escalates after 1 failed try, not 2).
    (Strategy.MINIMAL, [(SetStoploss("small", 1),)]),
    (Strategy.CONSERVATIVE, [(SetTimeout("small", 45.0),), (SetStoploss("small", 1),)]),
    (Strategy.AGGRESSIVE, [(SetChain(PY, ("big",)),), (MoveStartModel(PY, "big"),)]),
    # AUTO: mildest for MEDIUM, strongest for HIGH.
    (Strategy.AUTO, [(SetTimeout("small", 45.0),), (MoveStartModel(PY, "big"),)]),
    (Strategy.COMPREHENSIVE, [(SetTimeout("small", 45.0),), (SetChain(PY, ("big",)),), (SetStoploss("small", 1),),
                              (MoveStartModel(PY, "big"),), (SetHybridWeights(0.3, 0.3, 0.4),)]),
])
def test_each_strategy_maps_opportunities_to_its_plans(strategy: Strategy, expected: list[tuple]) -> None:
    assert changes(strategy, slow(), declining()) == expected


def test_a_plan_carries_its_opportunity_severity_effect_and_metric() -> None:
    [medium, high] = plans_for([slow(), declining()], Strategy.AUTO, CONFIG, fleet())
    assert (medium.severity, medium.severity.needs_approval, medium.metric) == (Severity.MEDIUM, False, "model_seconds")
    assert (high.severity, high.severity.needs_approval, high.metric) == (Severity.HIGH, True, "tasks_solved")
    assert high.effect == f"{PY} starts on big, not on small" and high.status == "proposed" and high.id is None


def test_plans_follow_the_effective_configuration() -> None:
    tuned = fleet()
    tuned.models["small"] = replace(tuned.models["small"], stoploss=1)
    # small already escalates at its first failure: no stop-loss remedy is left, MINIMAL has nothing mild.
    assert [p.changes for p in plans_for([declining()], Strategy.MINIMAL, CONFIG, tuned)] == [
        (MoveStartModel(PY, "big"),)]


@pytest.mark.parametrize("opportunity, expected", [
    (Opportunity("capability_gap", Severity.MEDIUM, None, PY), [(SetStoploss(None, 3),),
                                                                (SetChain(PY, ("small", "big", "huge")),)]),
    (Opportunity("resource_inefficiency", Severity.MEDIUM, "build", None), [(SetTwoTierThresholds(10.0, 10),)]),
    (Opportunity("resource_inefficiency", Severity.MEDIUM, "small", PY), [(SetChain(PY, ("big",)),)]),
    (Opportunity("resource_inefficiency", Severity.MEDIUM, "server", None, {"part": "server"}), []),
    (Opportunity("security_vulnerability", Severity.CRITICAL, "small", PY), [(MoveStartModel(PY, "big"),)]),
    (Opportunity("tool_upgrade", Severity.LOW, "big", None, {"newer": "big:latest"}), []),
    (Opportunity("training_needed", Severity.LOW, None, CPP), []),
    (Opportunity("error_pattern", Severity.HIGH, "ghost", PY), []),  # a model the inventory lacks
])
def test_remedies_per_opportunity_type(opportunity: Opportunity, expected: list[tuple]) -> None:
    assert changes(Strategy.COMPREHENSIVE, opportunity) == expected


def test_identical_plans_are_made_once() -> None:
    assert len(changes(Strategy.AUTO, declining(), declining())) == 1


def test_changes_apply_to_an_overlay() -> None:
    overlay = Overlay()
    for change in EVERY_CHANGE:
        overlay = change.apply(overlay, fleet())
    config, inventory = overlay.apply(CONFIG, fleet())
    assert inventory.route(PY).chain == ("big", "small")  # the start moved; the rest of the chain follows
    assert inventory.route(CPP).chain == ("huge", "big")
    assert (inventory.models["small"].stoploss, inventory.models["big"].timeout_s) == (1, 90.0)
    assert config.stoploss_per_model == 3
    assert (config.two_tier_profiling.score_change_threshold, config.two_tier_profiling.max_tier0_streak) == (10.0, 8)
    assert config.hybrid_decision_weights.failure_state == 0.4
    assert (inventory.models["small"].max_tokens, inventory.models["big"].context_tokens) == (640, 8192)
    assert inventory.models["big"].max_tokens is None and inventory.models["small"].context_tokens is None
    assert (config.meta_supervisor_weights.failure_weight, config.meta_supervisor_weights.recency_weight) == (0.4, 0.3)


def test_token_changes_describe_themselves_and_only_they_are_beyond_a_replay() -> None:
    assert SetMaxTokens("small", 640).describe() == "max_tokens of small: 640"
    assert SetContextTokens("small", 4096).describe() == "num_ctx of small: 4096"
    assert SetMetaWeights(0.4, 0.1, 0.2, 0.3).describe() == "meta-supervisor weights 0.4/0.1/0.2/0.3"
    opp = Opportunity("quality_issues", Severity.MEDIUM, "small")
    tokens = Plan(opp, Strategy.AUTO, (SetMaxTokens("small", 640), SetContextTokens("small", 4096)), "e", "m")
    assert tokens.replayable is False
    assert replace(tokens, changes=(SetMaxTokens("small", 640), SetTimeout("small", 30.0))).replayable is True
    assert replace(tokens, changes=(SetMetaWeights(0.4, 0.1, 0.2, 0.3),)).replayable is True


@pytest.mark.parametrize("change, problem", [
    (SetMaxTokens("small", 8), "overlay tuning of 'small': max_tokens 8 is not an integer 16..32768"),
    (SetContextTokens("big", 100), "overlay tuning of 'big': context_tokens 100 is not an integer 256..16777216"),
    (SetMaxTokens("ghost", 640), "overlay tunes model 'ghost', not in the inventory"),
    (SetMetaWeights(0.5, 0.5, 0.5, 0.5), "must sum to 1"),
])
def test_a_token_or_meta_change_out_of_range_does_not_fit(change, problem: str) -> None:
    with pytest.raises(OverlayError, match=problem):
        change.apply(Overlay(), fleet()).apply(CONFIG, fleet())


def test_a_stored_token_plan_reads_back_in_a_process_that_imports_no_job() -> None:
    """The change types live with the others: reading a stored plan needs no scheduled job's module."""
    import subprocess
    import sys

    code = ("from kisystem.improve.plans import change_from_json; import sys; "
            "c = change_from_json({'kind': 'set_num_ctx', 'model': 'm', 'n': 4096}); "
            "assert 'kisystem.schedule.jobs.token_budget' not in sys.modules; print(c.describe())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "num_ctx of m: 4096"


def test_every_change_type_round_trips_through_json() -> None:
    assert {c.kind for c in EVERY_CHANGE} == set(CHANGE_TYPES)
    for change in EVERY_CHANGE:
        assert change_from_json(change_to_json(change)) == change


def test_strategy_names_are_case_insensitive_and_an_unknown_one_is_a_usage_error() -> None:
    assert Strategy.parse("conservative") is Strategy.CONSERVATIVE
    with pytest.raises(UsageError, match=r"unknown strategy 'bold' \(allowed: auto, conservative, aggressive, "
                                         r"minimal, comprehensive\)"):
        Strategy.parse("bold")


def test_an_unknown_opportunity_type_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown opportunity type 'slowness'"):
        Opportunity("slowness", Severity.LOW)
    assert Opportunity("code_smell", "MEDIUM").severity is Severity.MEDIUM
