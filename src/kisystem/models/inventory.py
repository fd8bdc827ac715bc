"""Models, endpoints and domain routes as data.

Two built-in profiles ship as package data: ``ollama`` (the seeds' 7 models and 5 domain
routes) and ``embedded`` (the two small models kisystem serves itself).  A user inventory
file in the same TOML format replaces the built-in profile (config key
``inventory_file``), so models and routes change in config, never in code.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable, TypeVar

from kisystem.errors import UsageError
from kisystem.models.base import Endpoint, Mode
from kisystem.models.catalog import CATALOG

T = TypeVar("T")

PROFILES = ("embedded", "ollama")
_MODES = ("chat", "completion")
_BACKENDS = ("ollama", "openai")
STOPLOSS_RANGE = (1, 5)  # a model's own failed tries before escalating
MAX_TOKENS_RANGE = (16, 32768)  # an answer budget, in tokens
CONTEXT_TOKENS_RANGE = (256, 1 << 24)  # a context (prompt plus answer), in tokens


class InventoryError(UsageError):
    """An inventory file is malformed, or names a model or domain it does not have."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    rank: int
    role: str
    timeout_s: float
    endpoint: str
    mode: Mode = "chat"
    embedded: str | None = None  # name in the embedded catalog, when kisystem serves it
    stoploss: int | None = None  # failed tries before escalating from this model (else the config's)
    context_tokens: int | None = None  # prompt plus answer must fit; None: unknown, not checked
    max_tokens: int | None = None  # the answer budget the loop asks this model for; None: the loop's default


@dataclass(frozen=True)
class Route:
    domain: str
    start: str
    escalation: tuple[str, ...]

    @property
    def chain(self) -> tuple[str, ...]:
        """Start model first, then the escalation order; each model at most once."""
        return tuple(dict.fromkeys((self.start, *self.escalation)))


@dataclass(frozen=True)
class Inventory:
    source: str
    endpoints: dict[str, Endpoint]
    models: dict[str, ModelSpec]
    routes: dict[str, Route]

    def model(self, name: str) -> ModelSpec:
        if name not in self.models:
            raise InventoryError(f"unknown model {name!r} (known: {', '.join(self.models)})")
        return self.models[name]

    def endpoint_of(self, model: str) -> Endpoint:
        return self.endpoints[self.model(model).endpoint]

    def route(self, domain: str) -> Route:
        if domain not in self.routes:
            raise InventoryError(f"no route for domain {domain!r} (routes: {', '.join(self.routes)})")
        return self.routes[domain]

    @property
    def domains(self) -> tuple[str, ...]:
        return tuple(self.routes)


def load_inventory(profile: str = "embedded", inventory_file: Path | None = None) -> Inventory:
    """The user's inventory file when given, else the named built-in profile."""
    if inventory_file is not None:
        return parse_inventory(_read_toml(inventory_file), str(inventory_file))
    if profile not in PROFILES:
        raise InventoryError(f"unknown model profile {profile!r} (allowed: {', '.join(PROFILES)})")
    text = files("kisystem.models").joinpath("profiles", f"{profile}.toml").read_text()
    return parse_inventory(tomllib.loads(text), f"built-in profile {profile!r}")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as err:
        raise InventoryError(f"{path}: cannot read inventory ({err.strerror})") from err
    except tomllib.TOMLDecodeError as err:
        raise InventoryError(f"{path}: invalid TOML ({err})") from err


def parse_inventory(data: dict[str, Any], source: str) -> Inventory:
    try:
        endpoints = {name: _entry(f"endpoint {name!r}", _endpoint, name, raw)
                     for name, raw in data.get("endpoints", {}).items()}
        models = {m.name: m for m in (_entry(f"model #{i + 1}", _model, raw)
                                      for i, raw in enumerate(data.get("models", [])))}
        routes = {d: _entry(f"route {d!r}", _route, d, raw) for d, raw in data.get("routes", {}).items()}
    except (KeyError, TypeError, ValueError) as err:
        raise InventoryError(f"{source}: {err}") from err
    _check_references(source, endpoints, models, routes)
    return Inventory(source, endpoints, models, routes)


_ALLOWED = {"backend": f"one of {', '.join(_BACKENDS)}", "base_url": "e.g. http://127.0.0.1:11434",
            "rank": "an integer", "timeout_s": "seconds", "endpoint": "an endpoint's name",
            "start": "a model's name", "name": "the model's name on its backend"}


def _entry(what: str, parse: Callable[..., T], *args: Any) -> T:
    """``parse(*args)``, its errors naming the entry (and, for a missing key, what it may be)."""
    try:
        return parse(*args)
    except KeyError as err:
        key = err.args[0]
        hint = f" ({_ALLOWED[key]})" if key in _ALLOWED else ""
        raise ValueError(f"{what}: missing required key {key!r}{hint}") from None
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what}: {err}") from None


def _endpoint(name: str, raw: dict[str, Any]) -> Endpoint:
    backend = raw["backend"]
    if backend not in _BACKENDS:
        raise ValueError(f"backend {backend!r} not one of {', '.join(_BACKENDS)}")
    return Endpoint(name=name, backend=backend, base_url=str(raw["base_url"]).rstrip("/"),
                    api_key=raw.get("api_key"), retries=int(raw.get("retries", 2)))


def _model(raw: dict[str, Any]) -> ModelSpec:
    mode = raw.get("mode", "chat")
    if mode not in _MODES:
        raise ValueError(f"{raw.get('name')!r}: mode {mode!r} not one of {', '.join(_MODES)}")
    return ModelSpec(name=str(raw["name"]), rank=int(raw["rank"]), role=str(raw.get("role", "")),
                     timeout_s=float(raw["timeout_s"]), endpoint=str(raw["endpoint"]), mode=mode,
                     embedded=raw.get("embedded"), stoploss=_bounded(raw, "stoploss", STOPLOSS_RANGE),
                     context_tokens=_context(raw), max_tokens=_bounded(raw, "max_tokens", MAX_TOKENS_RANGE))


def integer_problem(key: str, value: Any, bounds: tuple[int, int]) -> str | None:
    """Why ``value`` is no ``key`` (an integer within ``bounds``), or None when it is one.

    Shared with the configuration overlay, so that a tuned value obeys the inventory's own rule."""
    lo, hi = bounds
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return f"{key} {value!r} is not an integer {lo}..{hi}"
    return None


def _bounded(raw: dict[str, Any], key: str, bounds: tuple[int, int]) -> int | None:
    value = raw.get(key)
    if value is not None and (problem := integer_problem(key, value, bounds)):
        raise ValueError(f"{raw.get('name')!r}: {problem}")
    return value


def _context(raw: dict[str, Any]) -> int | None:
    """The inventory's ``context_tokens``, else the catalog's n_ctx for an embedded model."""
    if raw.get("context_tokens") is None and raw.get("embedded"):
        model = CATALOG.get(raw["embedded"])
        return model.n_ctx if model else None
    return _bounded(raw, "context_tokens", CONTEXT_TOKENS_RANGE)


def _route(domain: str, raw: dict[str, Any]) -> Route:
    return Route(domain=domain, start=str(raw["start"]), escalation=tuple(raw.get("escalation", ())))


def _check_references(source: str, endpoints: dict, models: dict, routes: dict[str, Route]) -> None:
    for model in models.values():
        if model.endpoint not in endpoints:
            raise InventoryError(f"{source}: model {model.name!r} uses unknown endpoint {model.endpoint!r}")
    for route in routes.values():
        for name in route.chain:
            if name not in models:
                raise InventoryError(f"{source}: route {route.domain!r} names unknown model {name!r}")
