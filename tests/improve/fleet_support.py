"""The small fleets of the improve tests: one local endpoint, ranked models, a route per domain."""

from __future__ import annotations

import json
import tomllib

from kisystem.models.inventory import Inventory, parse_inventory

PY = "Python/General"
CPP = "C++/System"
BASE_URL = "http://127.0.0.1:9"  # nothing listens there: the tests that need a server replace it


def fleet_toml(models: dict[str, int], routes: dict[str, tuple[str, ...]], backend: str = "openai") -> str:
    """Inventory TOML of ``models`` (name -> timeout_s, ranked in this order) and ``routes`` (domain -> its
    start model, then its escalation)."""
    parts = [f'[endpoints.local]\nbackend = "{backend}"\nbase_url = "{BASE_URL}"\n']
    for rank, (name, timeout_s) in enumerate(models.items(), 1):
        parts.append(f'[[models]]\nname = "{name}"\nrank = {rank}\ntimeout_s = {timeout_s}\nendpoint = "local"\n')
    for domain, (start, *escalation) in routes.items():
        parts.append(f'[routes."{domain}"]\nstart = "{start}"\nescalation = {json.dumps(escalation)}\n')
    return "\n".join(parts)


def parse_fleet(toml: str) -> Inventory:
    return parse_inventory(tomllib.loads(toml), "test fleet")
