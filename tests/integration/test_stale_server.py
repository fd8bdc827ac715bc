"""A model server left behind by a crashed kisystem is replaced; one still in use is shared;
a stranger on the port that serves another model is one clear error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kisystem.errors import ServerStartError
from kisystem.models import server_records
from kisystem.models.inventory import load_inventory
from kisystem.models.server import EmbeddedFleet, is_healthy
from tests.integration.support import smollm2_inventory

pytestmark = pytest.mark.integration
PORT = 18551  # not the embedded profile's ports: a fleet serving those may be running


def write_home(home: Path, embedded_home: Path, name: str = "smollm2-135m") -> Path:
    home.mkdir(parents=True)
    (home / "models").symlink_to(embedded_home / "models")
    inventory = home / "inventory.toml"
    inventory.write_text(smollm2_inventory(PORT, name))
    (home / "config.json").write_text(json.dumps({"inventory_file": str(inventory)}))
    return inventory


def start_server_by_hand(home: Path) -> subprocess.Popen:
    """`kisystem models serve` as a crashed run would have left it (its own process group)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KISYSTEM_")}
    proc = subprocess.Popen([sys.executable, "-m", "kisystem", "--home", str(home), "--config",
                             str(home / "config.json"), "models", "serve", "--quiet"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 60
    while not is_healthy(f"http://127.0.0.1:{PORT}") and time.monotonic() < deadline:
        time.sleep(0.2)
    return proc


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def fleet(home: Path, inventory: Path) -> EmbeddedFleet:
    return EmbeddedFleet(load_inventory("embedded", inventory), home, config_file=home / "config.json")


def test_a_server_whose_owner_died_is_replaced_and_one_in_use_is_shared(tmp_path, embedded_home):
    home = tmp_path / "home"
    inventory = write_home(home, embedded_home)
    old = start_server_by_hand(home)
    try:
        server_records.record_path(home, PORT).parent.mkdir(parents=True)
        server_records.record_path(home, PORT).write_text(json.dumps({"server_pid": old.pid, "owner_pid": dead_pid()}))
        with fleet(home, inventory) as replaced:
            assert old.wait(timeout=15) is not None  # the orphan was stopped
            new_pid = replaced._proc.pid
            assert json.loads(server_records.record_path(home, PORT).read_text()) == {
                "server_pid": new_pid, "owner_pid": os.getpid()}
            owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            try:  # the same server, seen from another live kisystem: shared, not replaced
                server_records.record_path(home, PORT).write_text(
                    json.dumps({"server_pid": new_pid, "owner_pid": owner.pid}))
                with fleet(home, inventory) as sharing:
                    assert sharing._proc is None and is_healthy(f"http://127.0.0.1:{PORT}")
            finally:
                owner.kill()
                owner.wait()
        assert not server_records.record_path(home, PORT).exists() or \
            json.loads(server_records.record_path(home, PORT).read_text())["server_pid"] != new_pid
    finally:
        if old.poll() is None:
            old.kill()
            old.wait()


def test_a_stranger_serving_another_model_on_the_port_is_one_clear_error(tmp_path, embedded_home):
    stranger_home = tmp_path / "stranger"
    write_home(stranger_home, embedded_home, name="someone-elses-model")
    stranger = start_server_by_hand(stranger_home)
    try:
        home = tmp_path / "home"
        inventory = write_home(home, embedded_home)
        with pytest.raises(ServerStartError, match=rf"cannot serve smollm2-135m on http://127.0.0.1:{PORT}: the "
                                                   "port is taken by a server that does not serve it"):
            with fleet(home, inventory):
                pass
        assert stranger.poll() is None  # a stranger is not ours to stop
    finally:
        stranger.kill()
        stranger.wait()
