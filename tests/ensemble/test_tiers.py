"""Tier sizing: the seed's shares of a 12-model fleet scaled to the fleet, samples so that a small
fleet still fans out, and the tier timeouts from the config."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kisystem.config import EnsembleSettings, OptimizationConfig
from kisystem.ensemble.members import Member, Tier
from kisystem.ensemble.tiers import members_for, models_in_tier, tier_members, timeout_for
from kisystem.errors import UsageError

DEFAULT = EnsembleSettings()
FLEET_12 = [f"m{i:02d}" for i in range(12)]  # ranked: m00 the smallest and fastest


def asked(tier: Tier, models: list[str], settings: EnsembleSettings = DEFAULT) -> list[tuple[str, int, float]]:
    return [(m.model, m.sample, m.temperature) for m in members_for(tier, models, settings)]


def test_a_fleet_of_12_asks_the_seeds_counts_of_its_fastest_models_once_each() -> None:
    sizes = {tier: [m.model for m in members_for(tier, FLEET_12, DEFAULT)] for tier in Tier}
    assert sizes == {Tier.SIMPLE: FLEET_12[:3], Tier.MEDIUM: FLEET_12[:5], Tier.COMPLEX: FLEET_12[:8],
                     Tier.EXPERT: FLEET_12}  # fmt: skip
    assert {m.sample for tier in Tier for m in members_for(tier, FLEET_12, DEFAULT)} == {0}
    assert {m.temperature for tier in Tier for m in members_for(tier, FLEET_12, DEFAULT)} == {0.0}  # greedy: asked once
    seed = {Tier.SIMPLE: (2, 3), Tier.MEDIUM: (4, 6), Tier.COMPLEX: (8, 8), Tier.EXPERT: (10, 12)}
    assert all(lo <= len(members_for(t, FLEET_12, DEFAULT)) <= hi for t, (lo, hi) in seed.items())


def test_a_fleet_of_3_takes_its_share_of_models_and_samples_them_to_fan_out() -> None:
    fleet = ["small", "mid", "big"]
    assert asked(Tier.SIMPLE, fleet) == [("small", 0, 0.0), ("small", 1, 0.8), ("small", 2, 0.8)]
    assert asked(Tier.MEDIUM, fleet) == [("small", 0, 0.0), ("mid", 0, 0.0), ("small", 1, 0.8), ("mid", 1, 0.8),
                                         ("small", 2, 0.8)]  # fmt: skip
    assert asked(Tier.COMPLEX, fleet) == [(m, s, 0.8 if s else 0.0) for s in range(3) for m in ("small", "mid")]
    assert asked(Tier.EXPERT, fleet) == [(m, s, 0.8 if s else 0.0) for s in range(3) for m in fleet]


def test_a_fleet_of_1_asks_its_one_model_several_times_in_every_tier() -> None:
    for tier in Tier:
        assert asked(tier, ["only"]) == [("only", 0, 0.0), ("only", 1, 0.8), ("only", 2, 0.8)]


@pytest.mark.parametrize(("fleet", "expected"), [
    (1, (1, 1, 1, 1)), (2, (1, 1, 2, 2)), (3, (1, 2, 2, 3)), (4, (1, 2, 3, 4)), (6, (2, 3, 4, 6)),
    (12, (3, 5, 8, 12)), (13, (4, 6, 9, 13)), (24, (6, 10, 16, 24)),
])  # fmt: skip
def test_the_share_of_the_fleet_is_rounded_up_and_at_least_one_model(fleet: int, expected: tuple[int, ...]) -> None:
    assert tuple(models_in_tier(t, fleet, DEFAULT) for t in Tier) == expected


def test_a_fleet_larger_than_12_asks_every_chosen_model_once() -> None:
    fleet = [f"m{i}" for i in range(24)]
    assert [m.model for m in members_for(Tier.SIMPLE, fleet, DEFAULT)] == fleet[:6]


def test_the_sample_cap_and_the_tier_counts_come_from_the_config() -> None:
    one_sample = replace(DEFAULT, max_samples_per_model=1)
    assert asked(Tier.SIMPLE, ["a", "b", "c"], one_sample) == [("a", 0, 0.0)]
    assert asked(Tier.EXPERT, ["a", "b", "c"], one_sample) == [("a", 0, 0.0), ("b", 0, 0.0), ("c", 0, 0.0)]
    wide = replace(DEFAULT, simple_members=6, max_samples_per_model=4, sample_temperature=0.5)
    assert [m.model for m in members_for(Tier.SIMPLE, FLEET_12, wide)] == FLEET_12[:6]
    assert asked(Tier.SIMPLE, ["a"], wide) == [("a", 0, 0.0), ("a", 1, 0.5), ("a", 2, 0.5), ("a", 3, 0.5)]
    assert tier_members(Tier.SIMPLE, wide) == 6 and tier_members(Tier.EXPERT, wide) == 12


def test_without_a_greedy_first_sample_a_model_asked_more_than_once_always_samples() -> None:
    hot = replace(DEFAULT, greedy_first_sample=False)
    assert asked(Tier.MEDIUM, ["a", "b", "c"], hot) == [("a", 0, 0.8), ("b", 0, 0.8), ("a", 1, 0.8), ("b", 1, 0.8),
                                                        ("a", 2, 0.8)]  # fmt: skip
    assert {m.temperature for m in members_for(Tier.MEDIUM, FLEET_12, hot)} == {0.0}  # asked once: greedy


def test_members_are_unique_and_duplicate_models_count_once() -> None:
    members = members_for(Tier.EXPERT, ["a", "b", "a", "c", "b"], DEFAULT)
    assert len(set(members)) == len(members) == 9 and members[:3] == (Member("a"), Member("b"), Member("c"))


def test_an_empty_fleet_is_a_one_line_usage_error() -> None:
    with pytest.raises(UsageError, match="^the ensemble needs at least one model$"):
        members_for(Tier.SIMPLE, [], DEFAULT)


def test_tier_timeouts_default_to_the_seeds_recommendation_and_follow_the_config() -> None:
    assert [timeout_for(t, DEFAULT) for t in Tier] == [30.0, 45.0, 90.0, 120.0]
    config = OptimizationConfig.from_dict({"ensemble": {"complex_timeout_s": 200, "simple_timeout_s": 10}})
    assert [timeout_for(t, config.ensemble) for t in Tier] == [10.0, 45.0, 200.0, 120.0]


def test_the_tier_below_is_the_next_simpler_one() -> None:
    assert [t.below for t in Tier] == [None, Tier.SIMPLE, Tier.MEDIUM, Tier.COMPLEX]
