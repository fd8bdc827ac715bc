"""Integration fixtures: the real embedded models, pulled (cache reused) and served once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kisystem.models import catalog
from kisystem.models.inventory import load_inventory
from kisystem.models.server import EmbeddedFleet


def served_names() -> list[str]:
    """The catalog names of the models the embedded profile serves."""
    return [m.embedded for m in load_inventory("embedded").models.values() if m.embedded]


def _home() -> Path:
    """Weights are cached across runs in the user's kisystem home (or KISYSTEM_TEST_HOME)."""
    return Path(os.environ.get("KISYSTEM_TEST_HOME", Path.home() / ".kisystem"))


@pytest.fixture(scope="session")
def embedded_inventory():
    return load_inventory("embedded")


@pytest.fixture(scope="session")
def embedded_home() -> Path:
    home = _home()
    for name in served_names():
        catalog.pull(home / "models", name)
    return home


@pytest.fixture(scope="session")
def embedded_fleet(embedded_inventory, embedded_home):
    with EmbeddedFleet(embedded_inventory, embedded_home) as fleet:
        yield fleet
