"""How many models and samples a tier asks, and how long it waits (seed E, DESIGN decision 9).

A tier names N generations: ``ensemble.<tier>_members`` in the config, by default the seed's
count in its 12-model fleet (simple 3, medium 5, complex 8, expert 12; the seed says 2-3,
4-6, 8 and 10-12).  N/12 is the tier's share of the fleet, so a fleet of F models gives it

    models = ceil(N x F / 12), at least 1 and at most F

(integer arithmetic, rounded up: a tier never gets less than its share).  The smaller tiers
take the first models of the ranked list, the smallest and fastest; expert takes all.  The
tier's N generations are then dealt round-robin over its models, each model asked at most
``ensemble.max_samples_per_model`` times: the first samples of all models first, then the
second ones, until N are dealt (every chosen model at least once: a fleet larger than 12 asks
more than N).  So a 12-model fleet asks 3/5/8/12 models once each, while a
single model is asked up to 3 times and a 3-model fleet still fans out:

    fleet 12:  simple 3 models x1   medium 5 x1         complex 8 x1          expert 12 x1
    fleet 3:   simple 1 model  x3   medium 2 x3,2 (5)   complex 2 x3 (6)      expert 3 x3 (9)
    fleet 1:   every tier 1 model x3

A model's first sample is greedy (temperature 0: its best single answer) unless
``greedy_first_sample`` is off, in which case a model asked more than once samples every time;
every further sample runs at ``ensemble.sample_temperature``, so repeated asks differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from kisystem.config import EnsembleSettings
from kisystem.ensemble.members import Member, Tier
from kisystem.errors import UsageError

SEED_FLEET = 12  # the seed's fleet, which the tiers' member counts are given for


def tier_members(tier: Tier, settings: EnsembleSettings) -> int:
    """N: the generations the tier asks for (``ensemble.<tier>_members``)."""
    return int(getattr(settings, f"{tier.value}_members"))


def timeout_for(tier: Tier, settings: EnsembleSettings) -> float:
    """The tier's timeout in seconds (``ensemble.<tier>_timeout_s``; 30/45/90/120 by default)."""
    return float(getattr(settings, f"{tier.value}_timeout_s"))


def models_in_tier(tier: Tier, fleet: int, settings: EnsembleSettings) -> int:
    """ceil(N x fleet / 12), clamped to 1..fleet."""
    if fleet < 1:
        raise UsageError("the ensemble needs at least one model")
    share = -(-tier_members(tier, settings) * fleet // SEED_FLEET)
    return max(1, min(fleet, share))


def members_for(tier: Tier, models: Sequence[str], settings: EnsembleSettings) -> tuple[Member, ...]:
    """The tier's members from ``models`` (ranked: smallest/fastest first; duplicates ignored)."""
    ranked = list(dict.fromkeys(models))
    chosen = ranked[:models_in_tier(tier, len(ranked), settings)]
    wanted = max(len(chosen), min(tier_members(tier, settings), len(chosen) * settings.max_samples_per_model))
    asked = {m: -(-(wanted - i) // len(chosen)) for i, m in enumerate(chosen)}  # round-robin shares
    dealt = [(sample, model) for sample in range(settings.max_samples_per_model) for model in chosen
             if sample < asked[model]]  # fmt: skip
    return tuple(Member(model, sample, _temperature(sample, asked[model], settings)) for sample, model in dealt)


def _temperature(sample: int, times: int, settings: EnsembleSettings) -> float:
    greedy = sample == 0 and (settings.greedy_first_sample or times == 1)
    return 0.0 if greedy else settings.sample_temperature
