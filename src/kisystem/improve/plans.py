"""Optimization plans: typed changes to the routing and tuning overlay, and the five strategies.

An :class:`Opportunity` (what the health engine finds: type, severity, the model it is
about, the domain, its evidence) becomes zero or more :class:`Plan` s.  Each plan is one
remedy for one opportunity: a few :data:`Change` s, the effect it should have and the
metric that should show it.

Remedies per opportunity type, mildest first (``agent`` is a model; its "stop-loss" is its
own, else the config's ``stoploss_per_model``; an agent that is no model of the inventory
gets only the remedies that name no model):

- ``success_rate_decline``, ``error_pattern``, ``quality_issues``: the model's stop-loss - 1
  (escalate sooner); then: the domain starts on the model after it (only where it is the
  domain's start).  Extra for the first two: hybrid weights with 0.1 moved from meta_bias
  to failure_state (the floor lifts a failing task sooner).
- ``code_smell``, ``security_vulnerability``: the domain starts on the model after it.
- ``performance_degradation``: the model's timeout x 0.75 (cut the slowest answers); then:
  drop the model from the domain's chain.
- ``resource_inefficiency``: a model: drop it from the domain's chain; a loop part (the
  build/test phases): two-tier profiling thresholds x 2 (fewer full profiles).
- ``capability_gap``: ``stoploss_per_model`` + 1 (more tries per model); then: append the
  inventory's other models to the domain's chain, by rank.
- ``tool_upgrade``, ``training_needed``: none.  Adding a model is an edit of the user's
  inventory, and too few runs call for more runs (the queue), not for a routing change.

Strategies pick among them: MINIMAL the mildest remedy of HIGH and CRITICAL opportunities
only ("only critical fixes"); CONSERVATIVE the mildest of every opportunity; AGGRESSIVE the
strongest of every one; AUTO the mildest for LOW and MEDIUM, the strongest for HIGH and
CRITICAL; COMPREHENSIVE every remedy and extra, each as its own plan.  A plan's severity is
its opportunity's; HIGH and CRITICAL plans wait for approval (:mod:`kisystem.improve.auto`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from kisystem.config import OptimizationConfig
from kisystem.errors import UsageError
from kisystem.improve.overlay import Overlay, OverlayError, effective_route
from kisystem.models.inventory import Inventory, Route
from kisystem.store.migrations import PLAN_STATUSES  # noqa: F401  (re-exported: the statuses a plan goes through)

OPPORTUNITY_TYPES: tuple[str, ...] = (
    "success_rate_decline", "performance_degradation", "quality_issues", "tool_upgrade", "resource_inefficiency",
    "error_pattern", "capability_gap", "training_needed", "code_smell", "security_vulnerability")
METRICS: tuple[str, ...] = ("tasks_solved", "model_seconds")
TIMEOUT_CUT = 0.75
HYBRID_SHIFT = 0.1


class Severity(StrEnum):
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"
    CRITICAL = "CRITICAL"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)

    @property
    def needs_approval(self) -> bool:
        return self.rank >= Severity.HIGH.rank


class Strategy(StrEnum):
    AUTO = "AUTO"
    CONSERVATIVE = "CONSERVATIVE"
    AGGRESSIVE = "AGGRESSIVE"
    MINIMAL = "MINIMAL"
    COMPREHENSIVE = "COMPREHENSIVE"

    @classmethod
    def parse(cls, name: str) -> Strategy:
        try:
            return cls(name.upper())
        except ValueError:
            allowed = ", ".join(s.lower() for s in cls)
            raise UsageError(f"unknown strategy {name!r} (allowed: {allowed})") from None


@dataclass(frozen=True)
class Opportunity:
    """An improvement opportunity: ``agent`` is the model (or loop part) it is about."""

    type: str
    severity: Severity
    agent: str | None = None
    domain: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in OPPORTUNITY_TYPES:
            raise UsageError(f"unknown opportunity type {self.type!r} (known: {', '.join(OPPORTUNITY_TYPES)})")
        object.__setattr__(self, "severity", Severity(self.severity))


# -- changes ------------------------------------------------------------------------------


class Change(Protocol):
    kind: ClassVar[str]

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay: ...

    def describe(self) -> str: ...


@dataclass(frozen=True)
class MoveStartModel:
    """The domain starts on ``model``; the rest of its chain follows in its order."""

    domain: str
    model: str
    kind: ClassVar[str] = "move_start"

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        chain = effective_route(inventory, overlay, self.domain).chain
        rest = tuple(m for m in chain if m != self.model)
        return overlay.with_route(Route(self.domain, self.model, rest))

    def describe(self) -> str:
        return f"{self.domain}: start on {self.model}"


@dataclass(frozen=True)
class SetChain:
    domain: str
    chain: tuple[str, ...]
    kind: ClassVar[str] = "set_chain"

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        if not self.chain:
            raise OverlayError(f"an empty chain for {self.domain!r} would leave its tasks no model")
        effective_route(inventory, overlay, self.domain)  # the domain must have a route
        return overlay.with_route(Route(self.domain, self.chain[0], tuple(self.chain[1:])))

    def describe(self) -> str:
        return f"{self.domain}: chain {' > '.join(self.chain)}"


@dataclass(frozen=True)
class SetStoploss:
    """A model's own stop-loss, or with ``model`` None the config's ``stoploss_per_model``."""

    model: str | None
    n: int
    kind: ClassVar[str] = "set_stoploss"

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        if self.model is None:
            return overlay.with_settings({"stoploss_per_model": self.n})
        return overlay.with_model(self.model, stoploss=self.n)

    def describe(self) -> str:
        return f"stop-loss of {self.model or 'every model'}: {self.n}"


@dataclass(frozen=True)
class SetTimeout:
    model: str
    s: float
    kind: ClassVar[str] = "set_timeout"

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        return overlay.with_model(self.model, timeout_s=float(self.s))

    def describe(self) -> str:
        return f"timeout of {self.model}: {self.s:g} s"


@dataclass(frozen=True)
class SetHybridWeights:
    meta_bias: float
    complexity: float
    failure_state: float
    kind: ClassVar[str] = "set_hybrid_weights"

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        weights = {"meta_bias": self.meta_bias, "complexity": self.complexity, "failure_state": self.failure_state}
        return overlay.with_settings({"hybrid_decision_weights": weights})

    def describe(self) -> str:
        return f"hybrid weights {self.meta_bias:g}/{self.complexity:g}/{self.failure_state:g}"


@dataclass(frozen=True)
class SetTwoTierThresholds:
    score_change_threshold: float
    max_tier0_streak: int
    kind: ClassVar[str] = "set_two_tier"

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        return overlay.with_settings({"two_tier_profiling": {
            "score_change_threshold": self.score_change_threshold, "max_tier0_streak": self.max_tier0_streak}})

    def describe(self) -> str:
        return f"two-tier profiling: threshold {self.score_change_threshold:g}, streak {self.max_tier0_streak}"


CHANGE_TYPES: dict[str, type] = {c.kind: c for c in (
    MoveStartModel, SetChain, SetStoploss, SetTimeout, SetHybridWeights, SetTwoTierThresholds)}


def change_to_json(change: Change) -> dict[str, Any]:
    return {"kind": change.kind, **asdict(change)}  # type: ignore[call-overload]


def change_from_json(data: Mapping[str, Any]) -> Change:
    fields_ = dict(data)
    cls = CHANGE_TYPES[fields_.pop("kind")]
    if "chain" in fields_:
        fields_["chain"] = tuple(fields_["chain"])
    return cls(**fields_)


# -- plans --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    opportunity: Opportunity
    strategy: Strategy
    changes: tuple[Change, ...]
    effect: str
    metric: str  # one of METRICS: what should improve
    id: int | None = None
    status: str = "proposed"
    created: datetime | None = None
    updated: datetime | None = None

    @property
    def severity(self) -> Severity:
        return self.opportunity.severity

    def apply_to(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        """``overlay`` with every change of the plan, in order."""
        for change in self.changes:
            overlay = change.apply(overlay, inventory)
        return overlay

    def describe(self) -> str:
        return "; ".join(c.describe() for c in self.changes)


@dataclass(frozen=True)
class _Remedy:
    changes: tuple[Change, ...]
    effect: str
    metric: str


def plans_for(opportunities: Iterable[Opportunity], strategy: Strategy, config: OptimizationConfig,
              inventory: Inventory) -> list[Plan]:
    """The plans ``strategy`` makes of ``opportunities`` under the effective ``config`` and ``inventory``.

    Identical change sets are planned once (the first opportunity asking for them wins).
    """
    plans, seen = [], set()
    for opportunity in opportunities:
        if strategy is Strategy.MINIMAL and not opportunity.severity.needs_approval:
            continue
        for remedy in _pick(strategy, opportunity, config, inventory):
            key = tuple(repr(c) for c in remedy.changes)
            if key not in seen:
                seen.add(key)
                plans.append(Plan(opportunity, strategy, remedy.changes, remedy.effect, remedy.metric))
    return plans


def _pick(strategy: Strategy, opportunity: Opportunity, config: OptimizationConfig,
          inventory: Inventory) -> list[_Remedy]:
    ladder, extras = _remedies(opportunity, config, inventory)
    if not ladder:
        return extras if strategy is Strategy.COMPREHENSIVE else []
    strongest = (strategy is Strategy.AGGRESSIVE
                 or (strategy is Strategy.AUTO and opportunity.severity.needs_approval))
    if strategy is Strategy.COMPREHENSIVE:
        return [*ladder, *extras]
    return [ladder[-1] if strongest else ladder[0]]


def _remedies(opp: Opportunity, config: OptimizationConfig,
              inventory: Inventory) -> tuple[list[_Remedy], list[_Remedy]]:
    """(the remedies mildest first, the extras) for one opportunity; empty where none applies."""
    model = opp.agent if opp.agent in inventory.models else None  # else a loop part (or a model gone)
    chain = inventory.route(opp.domain).chain if opp.domain in inventory.routes else ()
    kind = opp.type
    if kind in ("success_rate_decline", "error_pattern", "quality_issues", "code_smell", "security_vulnerability"):
        ladder = [] if kind in ("code_smell", "security_vulnerability") else _fewer_tries(model, config, inventory)
        ladder += _start_after(opp.domain, model, chain)
        extras = _lift_sooner(config) if model and kind in ("success_rate_decline", "error_pattern") else []
        return ladder, extras
    if kind == "performance_degradation":
        return _shorter_timeout(model, inventory) + _without(opp.domain, model, chain), []
    if kind == "resource_inefficiency":
        return (_without(opp.domain, model, chain) if model else _fewer_full_profiles(config)), []
    if kind == "capability_gap":
        return _more_tries(config) + _longer_chain(opp.domain, chain, inventory), []
    return [], []  # tool_upgrade, training_needed: see the module docstring


def _own_stoploss(model: str, config: OptimizationConfig, inventory: Inventory) -> int:
    return inventory.models[model].stoploss or config.stoploss_per_model


def _fewer_tries(model: str | None, config: OptimizationConfig, inventory: Inventory) -> list[_Remedy]:
    if model is None or (n := _own_stoploss(model, config, inventory)) <= 1:
        return []
    return [_Remedy((SetStoploss(model, n - 1),), f"escalate from {model} after {n - 1} failed tries, not {n}",
                    "model_seconds")]


def _start_after(domain: str | None, model: str | None, chain: Sequence[str]) -> list[_Remedy]:
    if domain is None or not chain or chain[0] != model or len(chain) < 2:
        return []
    return [_Remedy((MoveStartModel(domain, chain[1]),), f"{domain} starts on {chain[1]}, not on {model}",
                    "tasks_solved")]


def _lift_sooner(config: OptimizationConfig) -> list[_Remedy]:
    w = config.hybrid_decision_weights
    if w.meta_bias < HYBRID_SHIFT:
        return []
    weights = SetHybridWeights(round(w.meta_bias - HYBRID_SHIFT, 6), w.complexity,
                               round(w.failure_state + HYBRID_SHIFT, 6))
    return [_Remedy((weights,), "the hybrid floor lifts a failing task along its chain sooner", "tasks_solved")]


def _shorter_timeout(model: str | None, inventory: Inventory) -> list[_Remedy]:
    if model is None:
        return []
    s = round(inventory.models[model].timeout_s * TIMEOUT_CUT, 1)
    return [_Remedy((SetTimeout(model, s),), f"answers of {model} slower than {s:g} s are cut off",
                    "model_seconds")]


def _without(domain: str | None, model: str | None, chain: Sequence[str]) -> list[_Remedy]:
    if domain is None or model not in chain or len(chain) < 2:
        return []
    rest = tuple(m for m in chain if m != model)
    return [_Remedy((SetChain(domain, rest),), f"{domain} no longer runs {model}", "model_seconds")]


def _fewer_full_profiles(config: OptimizationConfig) -> list[_Remedy]:
    t = config.two_tier_profiling
    change = SetTwoTierThresholds(min(100.0, t.score_change_threshold * 2), min(100, t.max_tier0_streak * 2))
    return [_Remedy((change,), "fewer full profiles (tier 1) per task", "model_seconds")]


def _more_tries(config: OptimizationConfig) -> list[_Remedy]:
    n = config.stoploss_per_model
    if n >= 5:
        return []
    return [_Remedy((SetStoploss(None, n + 1),), f"every model gets {n + 1} tries, not {n}", "tasks_solved")]


def _longer_chain(domain: str | None, chain: Sequence[str], inventory: Inventory) -> list[_Remedy]:
    if domain is None or not chain:
        return []
    others = sorted((m for m in inventory.models.values() if m.name not in chain), key=lambda m: m.rank)
    if not others:
        return []
    longer = (*chain, *(m.name for m in others))
    return [_Remedy((SetChain(domain, longer),), f"{domain} escalates on to {', '.join(m.name for m in others)}",
                    "tasks_solved")]
