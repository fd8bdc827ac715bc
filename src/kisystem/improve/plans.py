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
  build/test phases): two-tier profiling thresholds x 2 (fewer full profiles); a model server:
  none (its memory is the models' and the machine's; the opportunity reports it).
- ``capability_gap``: ``stoploss_per_model`` + 1 (more tries per model); then: append the
  inventory's other models to the domain's chain, by rank.
- ``tool_upgrade``, ``training_needed``: none.  Adding a model is an edit of the user's
  inventory, and too few runs call for more runs (the queue), not for a routing change.

Other changes come from the scheduled jobs: a model's answer budget (:class:`SetMaxTokens`)
and context (:class:`SetContextTokens`) from the token budget review, the meta-supervisor
weights (:class:`SetMetaWeights`) from formula tuning.  The first two change the answers
themselves, which no replay of recorded answers can show (``replayable`` False): such a plan
waits for approval, and the approval decides (:func:`kisystem.improve.auto.approve`).

Strategies pick among them: MINIMAL the mildest remedy of HIGH and CRITICAL opportunities
only ("only critical fixes"); CONSERVATIVE the mildest of every opportunity; AGGRESSIVE the
strongest of every one; AUTO the mildest for LOW and MEDIUM, the strongest for HIGH and
CRITICAL; COMPREHENSIVE every remedy and extra, each as its own plan.  A plan's severity is
its opportunity's; HIGH and CRITICAL plans wait for approval (:mod:`kisystem.improve.auto`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
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
    """A typed change; one whose effect no replay of recorded answers can show says so with a class
    attribute ``replayable = False`` (absent: True)."""

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


class _SetSection:
    """A change that sets the config section ``section`` to the change's fields (named as in the config)."""

    section: ClassVar[str]

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        return overlay.with_settings({self.section: asdict(self)})  # type: ignore[call-overload]


@dataclass(frozen=True)
class SetMaxTokens:
    """The largest answer, in tokens, the loop asks ``model`` for (its ``max_tokens``)."""

    model: str
    n: int
    kind: ClassVar[str] = "set_max_tokens"
    replayable: ClassVar[bool] = False  # a recorded answer cut at the old budget cannot show the longer one

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        return overlay.with_model(self.model, max_tokens=self.n)

    def describe(self) -> str:
        return f"max_tokens of {self.model}: {self.n}"


@dataclass(frozen=True)
class SetContextTokens:
    """The context (num_ctx: prompt plus answer) ``model`` is checked with, and an embedded or
    Ollama model is served with (its ``context_tokens``)."""

    model: str
    n: int
    kind: ClassVar[str] = "set_num_ctx"
    replayable: ClassVar[bool] = False  # no recorded answer had the larger context

    def apply(self, overlay: Overlay, inventory: Inventory) -> Overlay:
        return overlay.with_model(self.model, context_tokens=self.n)

    def describe(self) -> str:
        return f"num_ctx of {self.model}: {self.n}"


@dataclass(frozen=True)
class SetMetaWeights(_SetSection):
    failure_weight: float
    time_weight: float
    count_weight: float
    recency_weight: float
    kind: ClassVar[str] = "set_meta_weights"
    section: ClassVar[str] = "meta_supervisor_weights"

    def describe(self) -> str:
        return (f"meta-supervisor weights {self.failure_weight:g}/{self.time_weight:g}/{self.count_weight:g}/"
                f"{self.recency_weight:g}")


@dataclass(frozen=True)
class SetHybridWeights(_SetSection):
    meta_bias: float
    complexity: float
    failure_state: float
    kind: ClassVar[str] = "set_hybrid_weights"
    section: ClassVar[str] = "hybrid_decision_weights"

    def describe(self) -> str:
        return f"hybrid weights {self.meta_bias:g}/{self.complexity:g}/{self.failure_state:g}"


@dataclass(frozen=True)
class SetTwoTierThresholds(_SetSection):
    score_change_threshold: float
    max_tier0_streak: int
    kind: ClassVar[str] = "set_two_tier"
    section: ClassVar[str] = "two_tier_profiling"

    def describe(self) -> str:
        return f"two-tier profiling: threshold {self.score_change_threshold:g}, streak {self.max_tier0_streak}"


CHANGE_TYPES: dict[str, type] = {c.kind: c for c in (
    MoveStartModel, SetChain, SetStoploss, SetTimeout, SetMaxTokens, SetContextTokens, SetMetaWeights,
    SetHybridWeights, SetTwoTierThresholds)}


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

    @property
    def replayable(self) -> bool:
        """False when no change of the plan can be judged by a replay of recorded answers."""
        return any(getattr(c, "replayable", True) for c in self.changes)

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


@dataclass(frozen=True)
class _Case:
    """One opportunity as its remedies see it: ``model`` None for a loop part (or a model gone)."""

    domain: str | None
    model: str | None
    chain: Sequence[str]  # the domain's chain, () without a route
    config: OptimizationConfig
    inventory: Inventory
    evidence: Mapping[str, Any]


def _remedies(opp: Opportunity, config: OptimizationConfig,
              inventory: Inventory) -> tuple[list[_Remedy], list[_Remedy]]:
    """(the remedies mildest first, the extras) for one opportunity; empty where none applies."""
    model = opp.agent if opp.agent in inventory.models else None
    chain = inventory.route(opp.domain).chain if opp.domain in inventory.routes else ()
    case = _Case(opp.domain, model, chain, config, inventory, opp.evidence)
    ladder, extras = _REMEDIES[opp.type]
    return _built(ladder, case), _built(extras, case)


def _built(builders: Iterable[Callable[[_Case], _Remedy | None]], case: _Case) -> list[_Remedy]:
    return [remedy for build in builders if (remedy := build(case)) is not None]


def _fewer_tries(c: _Case) -> _Remedy | None:
    if c.model is None or (n := c.inventory.models[c.model].stoploss or c.config.stoploss_per_model) <= 1:
        return None
    return _Remedy((SetStoploss(c.model, n - 1),), f"escalate from {c.model} after {n - 1} failed tries, not {n}",
                   "model_seconds")


def _start_after(c: _Case) -> _Remedy | None:
    if c.domain is None or len(c.chain) < 2 or c.chain[0] != c.model:
        return None
    return _Remedy((MoveStartModel(c.domain, c.chain[1]),), f"{c.domain} starts on {c.chain[1]}, not on {c.model}",
                   "tasks_solved")


def _lift_sooner(c: _Case) -> _Remedy | None:
    w = c.config.hybrid_decision_weights
    if not c.model or w.meta_bias < HYBRID_SHIFT:
        return None
    weights = SetHybridWeights(round(w.meta_bias - HYBRID_SHIFT, 6), w.complexity,
                               round(w.failure_state + HYBRID_SHIFT, 6))
    return _Remedy((weights,), "the hybrid floor lifts a failing task along its chain sooner", "tasks_solved")


def _shorter_timeout(c: _Case) -> _Remedy | None:
    if c.model is None:
        return None
    s = round(c.inventory.models[c.model].timeout_s * TIMEOUT_CUT, 1)
    return _Remedy((SetTimeout(c.model, s),), f"answers of {c.model} slower than {s:g} s are cut off", "model_seconds")


def _without(c: _Case) -> _Remedy | None:
    if c.domain is None or c.model not in c.chain or len(c.chain) < 2:
        return None
    rest = tuple(m for m in c.chain if m != c.model)
    return _Remedy((SetChain(c.domain, rest),), f"{c.domain} no longer runs {c.model}", "model_seconds")


def _without_or_fewer_full_profiles(c: _Case) -> _Remedy | None:
    """A model: drop it from the chain; a loop part (build/test): fewer full profiles (tier 1) per task;
    a model server: none."""
    if c.evidence.get("part") == "server":
        return None
    if c.model:
        return _without(c)
    t = c.config.two_tier_profiling
    change = SetTwoTierThresholds(min(100.0, t.score_change_threshold * 2), min(100, t.max_tier0_streak * 2))
    return _Remedy((change,), "fewer full profiles (tier 1) per task", "model_seconds")


def _more_tries(c: _Case) -> _Remedy | None:
    n = c.config.stoploss_per_model
    if n >= 5:
        return None
    return _Remedy((SetStoploss(None, n + 1),), f"every model gets {n + 1} tries, not {n}", "tasks_solved")


def _longer_chain(c: _Case) -> _Remedy | None:
    if c.domain is None or not c.chain:
        return None
    others = sorted((m for m in c.inventory.models.values() if m.name not in c.chain), key=lambda m: m.rank)
    if not others:
        return None
    longer = (*c.chain, *(m.name for m in others))
    return _Remedy((SetChain(c.domain, longer),), f"{c.domain} escalates on to {', '.join(m.name for m in others)}",
                   "tasks_solved")


# Per opportunity type: (its remedies, mildest first; its extras), as the module docstring lists them.
_REMEDIES: dict[str, tuple[tuple[Callable[[_Case], _Remedy | None], ...], ...]] = {
    "success_rate_decline":    ((_fewer_tries, _start_after), (_lift_sooner,)),
    "error_pattern":           ((_fewer_tries, _start_after), (_lift_sooner,)),
    "quality_issues":          ((_fewer_tries, _start_after), ()),
    "code_smell":              ((_start_after,), ()),
    "security_vulnerability":  ((_start_after,), ()),
    "performance_degradation": ((_shorter_timeout, _without), ()),
    "resource_inefficiency":   ((_without_or_fewer_full_profiles,), ()),
    "capability_gap":          ((_more_tries, _longer_chain), ()),
    "tool_upgrade":            ((), ()),
    "training_needed":         ((), ()),
}  # fmt: skip
