"""While the embedded models load, `run` and `demo` say which ones, how big, and for how long."""

from __future__ import annotations

import json
import os
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from kisystem.cli.live import FLEET_READY, FleetProgress, human_size, model_sizes
from kisystem.models import catalog
from kisystem.models.inventory import load_inventory
from kisystem.models.server import EmbeddedFleet, is_healthy

PORT = 18541  # outside the ports of the embedded profile (18431-18434), which a running fleet may hold
SMALL = "smollm2-135m"


class StatusLine:
    def __init__(self) -> None:
        self.shown: list[str] = []

    def update(self, text: str) -> None:
        self.shown.append(text)


def test_sizes_read_like_a_person_would_write_them() -> None:
    assert human_size(1_100_000_000) == "1.1 GB" and human_size(98_362_432) == "98 MB"
    sizes = model_sizes(load_inventory("embedded"))
    assert sizes and all(size > 10_000_000 for size in sizes.values())


def test_a_terminal_shows_each_loading_model_in_the_status_line_and_a_line_when_ready() -> None:
    out, status = StringIO(), StatusLine()
    progress = FleetProgress(Console(file=out, force_terminal=True, width=120), {"big": 1_100_000_000}, status)
    progress("big", "loading")
    progress("small", "loading")
    progress("big", "loading")
    assert status.shown[-1].startswith("loading big (1.1 GB), small ... ") and status.shown[-1].endswith(" s")
    progress("big", "ready")
    assert status.shown[-1].startswith("loading small ... ")
    progress("small", "ready")
    assert status.shown[-1] == FLEET_READY
    assert [line.split(" after ")[0] for line in out.getvalue().splitlines()] == ["big ready", "small ready"]


def test_a_log_gets_one_line_when_a_model_starts_loading_and_one_when_it_is_ready() -> None:
    out = StringIO()
    progress = FleetProgress(Console(file=out, force_terminal=False, width=120), {"big": 1_100_000_000})
    for _ in range(3):
        progress("big", "loading")
    progress("big", "ready")
    lines = out.getvalue().splitlines()
    assert lines[0] == "loading big (1.1 GB) ..." and lines[1].startswith("big ready after ") and len(lines) == 2


@pytest.mark.integration
def test_the_fleet_reports_loading_then_ready(tmp_path: Path) -> None:
    cache = Path(os.environ.get("KISYSTEM_TEST_HOME", Path.home() / ".kisystem")) / "models"
    if not catalog.is_pulled(cache, SMALL):
        pytest.skip(f"{SMALL} is not in {cache}")
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(cache)
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(f'[endpoints.tiny]\nbackend = "openai"\nbase_url = "http://127.0.0.1:{PORT}"\n'
                         f'[[models]]\nname = "{SMALL}"\nrank = 1\ntimeout_s = 60\nendpoint = "tiny"\n'
                         f'embedded = "{SMALL}"\n[routes."Python/General"]\nstart = "{SMALL}"\n')  # fmt: skip
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"inventory_file": str(inventory)}))
    heard: list[tuple[str, str]] = []
    fleet = EmbeddedFleet(load_inventory("embedded", inventory), home, config_file=config,
                          on_progress=lambda model, state: heard.append((model, state)))  # fmt: skip
    with fleet:
        assert is_healthy(f"http://127.0.0.1:{PORT}")
    assert heard[0] == (SMALL, "loading") and heard[-1] == (SMALL, "ready")
    assert heard.count((SMALL, "ready")) == 1
