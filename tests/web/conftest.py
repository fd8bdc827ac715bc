"""Fixtures of the dashboard tests: a seeded learning database (see ``support``)."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

# Starlette 1.x asks for httpx2 in its TestClient; httpx is what kisystem already has, and works.
with warnings.catch_warnings():  # it warns once, when first imported
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    import starlette.testclient  # noqa: F401

from tests.web.support import Seeded, seed
from tests.web.support_improve import Improved, seed_improvement


@pytest.fixture
def seeded(tmp_path: Path) -> Iterator[Seeded]:
    s = seed(tmp_path / "home")
    try:
        yield s
    finally:
        s.db.close()


@pytest.fixture
def improved(tmp_path: Path) -> Iterator[Improved]:
    s = seed_improvement(tmp_path / "home")
    try:
        yield s
    finally:
        s.seeded.db.close()
