"""A kisystem process killed hard leaves no llama.cpp server behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from kisystem.models.server import is_healthy
from tests.integration.support import smollm2_inventory

pytestmark = pytest.mark.integration
PORT = 18531  # not the embedded profile's ports: a fleet serving those may be running
PARENT = """
import sys, time
from pathlib import Path
from kisystem.models.inventory import load_inventory
from kisystem.models.server import EmbeddedFleet
home, inv, config = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
with EmbeddedFleet(load_inventory("embedded", inv), home, config_file=config):
    print("ready", flush=True)
    time.sleep(600)
"""


def test_a_sigkilled_parent_takes_its_model_server_with_it(tmp_path, embedded_home):
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(embedded_home / "models")
    inventory = tmp_path / "inventory.toml"
    inventory.write_text(smollm2_inventory(PORT))
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"inventory_file": str(inventory)}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("KISYSTEM_")}
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(home), str(inventory), str(config)],
                              stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout.readline().strip() == "ready"
        assert is_healthy(f"http://127.0.0.1:{PORT}")
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while is_healthy(f"http://127.0.0.1:{PORT}") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not is_healthy(f"http://127.0.0.1:{PORT}")
    finally:
        parent.kill()
