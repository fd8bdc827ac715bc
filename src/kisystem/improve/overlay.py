"""The routing and tuning overlay: what a configuration version changes over the shipped configuration.

An overlay names, per domain, a route (start model and escalation), per model a stop-loss,
a generation timeout, an answer budget (``max_tokens``) and a context (``context_tokens``,
which an embedded model is also served with), and the few OptimizationConfig values a plan
may change (:data:`SETTINGS`).  It never touches anything else: no source code, no endpoints, no
other config key (DESIGN decision 7).  Applying it validates it against the inventory and
the config's own rules; an overlay that does not fit raises :class:`OverlayError`.

JSON form::

    {"routes": {"Python/General": {"start": "m", "escalation": ["big"]}},
     "models": {"m": {"stoploss": 1, "timeout_s": 90.0, "max_tokens": 640, "context_tokens": 4096}},
     "config": {"stoploss_per_model": 3, "meta_supervisor_weights": {...}, "hybrid_decision_weights": {...},
                "two_tier_profiling": {...}}}

A model's keys are all optional: an overlay stored before ``max_tokens`` and ``context_tokens``
existed reads back unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from kisystem.config import OptimizationConfig
from kisystem.errors import ConfigError, UsageError
from kisystem.models.inventory import (
    CONTEXT_TOKENS_RANGE,
    MAX_TOKENS_RANGE,
    STOPLOSS_RANGE,
    Inventory,
    ModelSpec,
    Route,
    integer_problem,
)

SETTINGS: tuple[str, ...] = ("stoploss_per_model", "meta_supervisor_weights", "hybrid_decision_weights",
                             "two_tier_profiling")
"""The OptimizationConfig keys (top level; sections whole or in part) an overlay may set."""
_INTEGERS = {"stoploss": STOPLOSS_RANGE, "max_tokens": MAX_TOKENS_RANGE, "context_tokens": CONTEXT_TOKENS_RANGE}
"""A model's integer tunings and their ranges, as the inventory's own keys."""

Configured = tuple[OptimizationConfig, Inventory]
"""A configuration as the loop uses it: the config and the inventory (models and routes)."""


class OverlayError(UsageError):
    """An overlay names a model or domain the inventory lacks, or a value out of its range."""


@dataclass(frozen=True)
class ModelTuning:
    """A model's own stop-loss, generation timeout, answer budget and context; None keeps the inventory's."""

    stoploss: int | None = None
    timeout_s: float | None = None
    max_tokens: int | None = None
    context_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelTuning:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class Overlay:
    routes: Mapping[str, Route] = field(default_factory=dict)
    models: Mapping[str, ModelTuning] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)  # nested, as the config file

    @property
    def empty(self) -> bool:
        return not (self.routes or self.models or self.settings)

    def with_route(self, route: Route) -> Overlay:
        return replace(self, routes={**self.routes, route.domain: route})

    def with_model(self, model: str, **tuning: Any) -> Overlay:
        merged = replace(self.models.get(model, ModelTuning()), **tuning)
        return replace(self, models={**self.models, model: merged})

    def with_settings(self, settings: Mapping[str, Any]) -> Overlay:
        merged = dict(self.settings)
        for key, value in settings.items():
            merged[key] = {**merged.get(key, {}), **value} if isinstance(value, Mapping) else value
        return replace(self, settings=merged)

    def apply(self, config: OptimizationConfig, inventory: Inventory) -> Configured:
        """``(config, inventory)`` with this overlay applied; raises OverlayError where it does not fit."""
        return _apply_settings(config, self.settings), _apply_inventory(inventory, self)

    def to_json(self) -> dict[str, Any]:
        return {"routes": {d: {"start": r.start, "escalation": list(r.escalation)} for d, r in self.routes.items()},
                "models": {m: t.to_json() for m, t in self.models.items()},
                "config": dict(self.settings)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Overlay:
        try:
            routes = {d: Route(d, str(r["start"]), tuple(str(m) for m in r.get("escalation", ())))
                      for d, r in data.get("routes", {}).items()}
            models = {m: ModelTuning.from_json(t) for m, t in data.get("models", {}).items()}
        except (AttributeError, KeyError, TypeError) as err:
            raise OverlayError(f"malformed overlay ({type(err).__name__}: {err})") from err
        return cls(routes, models, dict(data.get("config", {})))


def effective_route(inventory: Inventory, overlay: Overlay, domain: str) -> Route:
    """The domain's route under ``overlay`` (its own where it sets one, else the inventory's)."""
    return overlay.routes.get(domain) or inventory.route(domain)


def _apply_settings(config: OptimizationConfig, settings: Mapping[str, Any]) -> OptimizationConfig:
    foreign = sorted(set(settings) - set(SETTINGS))
    if foreign:
        raise OverlayError(f"overlay sets {', '.join(foreign)}: only {', '.join(SETTINGS)} may change")
    if not settings:
        return config
    merged = config.to_dict()
    for key, value in settings.items():
        merged[key] = {**merged[key], **value} if isinstance(value, Mapping) else value
    try:
        return OptimizationConfig.from_dict(merged)
    except ConfigError as err:
        raise OverlayError(f"overlay config values are invalid: {'; '.join(err.problems)}") from err


def _apply_inventory(inventory: Inventory, overlay: Overlay) -> Inventory:
    for route in overlay.routes.values():
        _check_route(inventory, route)
    models = dict(inventory.models)
    for name, tuning in overlay.models.items():
        models[name] = _tuned(inventory, name, tuning)
    return replace(inventory, models=models, routes={**inventory.routes, **overlay.routes})


def _check_route(inventory: Inventory, route: Route) -> None:
    if route.domain not in inventory.routes:
        raise OverlayError(f"overlay routes domain {route.domain!r}, which the inventory has no route for")
    unknown = [m for m in route.chain if m not in inventory.models]
    if unknown:
        raise OverlayError(f"overlay route {route.domain!r} names {', '.join(unknown)}, not in the inventory")


def _tuned(inventory: Inventory, name: str, tuning: ModelTuning) -> ModelSpec:
    if name not in inventory.models:
        raise OverlayError(f"overlay tunes model {name!r}, not in the inventory")
    for key, bounds in _INTEGERS.items():
        value = getattr(tuning, key)
        if value is not None and (problem := integer_problem(key, value, bounds)):
            raise OverlayError(f"overlay tuning of {name!r}: {problem}")
    if tuning.timeout_s is not None and not (isinstance(tuning.timeout_s, int | float) and tuning.timeout_s > 0):
        raise OverlayError(f"overlay timeout_s {tuning.timeout_s!r} of {name!r} is not a number above 0")
    tuned = {k: v for k, v in asdict(tuning).items() if v is not None}
    if "timeout_s" in tuned:
        tuned["timeout_s"] = float(tuned["timeout_s"])
    return replace(inventory.models[name], **tuned)
