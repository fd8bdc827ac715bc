"""No traceback anywhere: every command, under the faults a user's machine throws at it, ends
with one ``error: ...`` line and a documented exit code, and reading commands keep working
where they can (issue 11, point 4).

The faults, each real:

- an unwritable home: HOME below a regular file, so every mkdir or open under it fails with
  ENOTDIR, for root too (chmod does not stop root);
- a taken port: the test itself listens on the port of a one-model embedded inventory;
- a locked database: a helper process holds a write transaction (BEGIN IMMEDIATE);
- a database path that is a directory, or a device (/dev/null);
- a read-only database: its folder bind-mounted read-only in a private mount namespace
  (``unshare -m``; EROFS, for root too), or chmod 555/444 when not root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kisystem.models import catalog
from tests.cli.support import kisystem, one_error_line

TASK = str(Path(__file__).parents[2] / "examples" / "judged" / "add.toml")
SMALL_MODEL = "smollm2-135m"

READING = [["meta", "bias"], ["meta", "stats"], ["profile", "stats"], ["queue", "status"]]


def _id(args: list[str]) -> str:
    return " ".join(Path(a).name for a in args[:2])


def _config(root: Path, name: str, endpoint: str, model: str, embedded: bool) -> Path:
    """A config (outside any home) selecting a one-model inventory at ``endpoint``."""
    inventory = root / f"{name}.toml"
    inventory.write_text(f'''
[endpoints.local]
backend = "openai"
base_url = "{endpoint}"
retries = 0

[[models]]
name = "{model}"
rank = 1
timeout_s = 5
endpoint = "local"
{f'embedded = "{model}"' if embedded else ""}

[routes."Python/General"]
start = "{model}"
''')
    config = root / f"{name}.json"
    config.write_text(json.dumps({"inventory_file": str(inventory)}))
    return config


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def dead_backend(tmp_path: Path) -> dict[str, str]:
    """Settings for a backend nobody listens on: no command of these tests reaches a model."""
    return {"KISYSTEM_CONFIG": str(_config(tmp_path, "dead", "http://127.0.0.1:9", "tiny", embedded=False))}


def _embedded(tmp_path: Path, port: int) -> dict[str, str]:
    config = _config(tmp_path, "embedded", f"http://127.0.0.1:{port}", SMALL_MODEL, embedded=True)
    return {"KISYSTEM_CONFIG": str(config)}


@pytest.fixture
def blocked_home(tmp_path: Path) -> Path:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    return blocker / "home"


# -- an unwritable home ------------------------------------------------------------------

@pytest.mark.parametrize("args", [["run", TASK], ["queue", "add", TASK], ["queue", "cancel", "1"]], ids=_id)
def test_writing_commands_with_an_unwritable_home_fail_in_one_line(tmp_path, blocked_home, dead_backend, args):
    proc = kisystem(blocked_home, *args, env=dead_backend)
    assert proc.returncode == 1
    line = one_error_line(proc, warnings_allowed=args[0] == "run")
    assert str(blocked_home.parent) in line and "not a directory" in line.lower()


def test_pull_with_an_unwritable_home_fails_before_downloading(blocked_home, dead_backend):
    proc = kisystem(blocked_home, "models", "pull", "--all", env=dead_backend)
    assert proc.returncode == 1
    assert "cannot create a temp dir" in one_error_line(proc)  # the step before any download


def test_run_with_an_unwritable_home_fails_before_starting_models(tmp_path, blocked_home):
    proc = kisystem(blocked_home, "run", TASK, env=_embedded(tmp_path, _free_port()))
    assert proc.returncode == 1
    line = one_error_line(proc, warnings_allowed=True)
    assert str(blocked_home) in line and "not a directory" in line  # the database, opened before any model


def test_serve_with_an_unwritable_home_fails_in_one_line(tmp_path, blocked_home):
    proc = kisystem(blocked_home, "models", "serve", env=_embedded(tmp_path, _free_port()))
    assert proc.returncode == 1
    assert str(blocked_home / "models") in one_error_line(proc)


def test_config_init_with_an_unwritable_home_fails_in_one_line(blocked_home):
    proc = kisystem(blocked_home, "config", "init")
    assert proc.returncode == 1
    assert str(blocked_home / "optimization_config.json") in one_error_line(proc)


@pytest.mark.parametrize("args", [*READING, ["models", "list"], ["config", "show"], ["tasks", "check", TASK]],
                         ids=_id)
def test_reading_commands_work_with_an_unwritable_home(blocked_home, dead_backend, args):
    proc = kisystem(blocked_home, *args, env=dead_backend)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr


# -- a taken port, a model llama.cpp cannot load -------------------------------------------

@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.fixture
def model_home(tmp_path: Path) -> Path:
    """A home whose weights are the test machine's cache, so that nothing is downloaded."""
    home = tmp_path / "home"
    home.mkdir()
    cache = Path(os.environ.get("KISYSTEM_TEST_HOME", Path.home() / ".kisystem")) / "models"
    if catalog.is_pulled(cache, SMALL_MODEL):
        (home / "models").symlink_to(cache)
    return home


def test_serve_on_a_taken_port_names_the_port_in_one_line(tmp_path, model_home, taken_port):
    proc = kisystem(model_home, "models", "serve", env=_embedded(tmp_path, taken_port))
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert f"127.0.0.1:{taken_port}" in line and "already in use" in line


def test_run_on_a_taken_port_fails_in_one_line_and_the_log_says_why(tmp_path, model_home, taken_port):
    proc = kisystem(model_home, "run", TASK, env=_embedded(tmp_path, taken_port))
    assert proc.returncode != 0
    line = one_error_line(proc, warnings_allowed=True)
    log = model_home / "logs" / "embedded-server.log"
    assert str(log) in line
    assert f"127.0.0.1:{taken_port}: the port is already in use" in log.read_text()
    assert "Traceback" not in log.read_text()


def test_weights_llama_cpp_cannot_load_give_its_reason_in_one_line(tmp_path):
    """xllamacpp raises a bare RuntimeError('Failed to init server'); llama.cpp's log says why."""
    home = tmp_path / "home"
    weights = catalog.model_path(home / "models", SMALL_MODEL)
    weights.parent.mkdir(parents=True)
    with weights.open("wb") as fh:
        fh.truncate(catalog.embedded_model(SMALL_MODEL).size)  # the right size, so it counts as pulled: zeros
    port = _free_port()
    proc = kisystem(home, "models", "serve", env=_embedded(tmp_path, port))
    assert proc.returncode == 3
    line = one_error_line(proc)
    assert f"127.0.0.1:{port}" in line and "GGUF" in line  # llama.cpp: invalid magic characters, expected 'GGUF'
    assert "failed to load model" in (home / "logs" / "embedded-server.log").read_text()


# -- a database another process holds for writing ------------------------------------------

HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE queue_tasks SET priority = priority")
print("holding", flush=True)
time.sleep(600)
"""


@pytest.fixture
def locked_home(tmp_path: Path, dead_backend) -> Iterator[Path]:
    """A home whose learning database (one queued task) another process holds for writing."""
    home = tmp_path / "home"
    assert kisystem(home, "queue", "add", TASK, env=dead_backend).returncode == 0
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(home / "learning.db")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        yield home
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("args", READING, ids=_id)
def test_reading_commands_work_while_another_process_writes(locked_home, dead_backend, args):
    proc = kisystem(locked_home, *args, env=dead_backend)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "locked" not in proc.stderr


def test_a_writing_command_names_the_locked_database_in_one_line(locked_home, dead_backend):
    proc = kisystem(locked_home, "queue", "add", TASK, "--key", "again", env=dead_backend)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert str(locked_home / "learning.db") in line and "locked by another process" in line


def test_run_on_a_locked_database_fails_in_one_line(locked_home, tmp_path, httpserver):
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "tiny"}]})
    httpserver.expect_request("/v1/chat/completions").respond_with_json({"error": "not needed"}, status=500)
    config = _config(tmp_path, "live", httpserver.url_for("").rstrip("/"), "tiny", embedded=False)
    proc = kisystem(locked_home, "run", TASK, env={"KISYSTEM_CONFIG": str(config)})
    assert proc.returncode == 1
    line = one_error_line(proc, warnings_allowed=True)
    assert str(locked_home / "learning.db") in line and "locked by another process" in line


# -- a database path that is a directory or a device -------------------------------------

@pytest.mark.parametrize("kind", ["directory", "device"])
@pytest.mark.parametrize("args", [["run", TASK], ["queue", "add", TASK], ["meta", "bias"], ["queue", "status"]],
                         ids=_id)
def test_a_database_that_is_a_directory_or_a_device_is_one_line(tmp_path, dead_backend, kind, args):
    db = tmp_path / "a-folder" if kind == "directory" else Path("/dev/null")
    db.mkdir(exist_ok=True) if kind == "directory" else None
    proc = kisystem(tmp_path / "home", *args, env={**dead_backend, "KISYSTEM_DB": str(db)})
    assert proc.returncode == 1
    line = one_error_line(proc, warnings_allowed=args[0] == "run")
    assert str(db) in line and ("is a directory" if kind == "directory" else "not a regular file") in line


# -- a read-only database -----------------------------------------------------------------

@pytest.fixture
def read_only_db(tmp_path: Path, dead_backend) -> Iterator[tuple[Path, list[str]]]:
    """A learning database (one queued task) in a read-only folder, and the command prefix that
    makes it so: a private read-only bind mount for root, file modes for anyone else."""
    folder = tmp_path / "ro"
    db = folder / "learning.db"
    assert kisystem(tmp_path / "home", "queue", "add", TASK, env={**dead_backend, "KISYSTEM_DB": str(db)}
                    ).returncode == 0
    if os.geteuid() != 0:
        db.chmod(0o444)
        folder.chmod(0o555)
        yield db, []
        folder.chmod(0o755)
        return
    prefix = ["unshare", "-m", "sh", "-c", 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"',
              str(folder)]
    probe = subprocess.run([*prefix, "sh", "-c", 'touch "$0/probe"', str(folder)], capture_output=True, text=True)
    if shutil.which("unshare") is None or probe.returncode == 0 or "Read-only" not in probe.stderr:
        pytest.skip(f"cannot mount a folder read-only here: {probe.stderr.strip()}")
    yield db, prefix


@pytest.mark.parametrize("args", READING, ids=_id)
def test_reading_commands_work_on_a_read_only_database(tmp_path, dead_backend, read_only_db, args):
    db, prefix = read_only_db
    proc = kisystem(tmp_path / "home", *args, env={**dead_backend, "KISYSTEM_DB": str(db)}, prefix=prefix)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr
    if args == ["queue", "status"]:
        assert "example.add" in proc.stdout  # it really read the file


@pytest.mark.parametrize("args", [["queue", "add", TASK, "--key", "again"], ["queue", "cancel", "1"]], ids=_id)
def test_a_writing_command_on_a_read_only_database_is_one_line(tmp_path, dead_backend, read_only_db, args):
    db, prefix = read_only_db
    proc = kisystem(tmp_path / "home", *args, env={**dead_backend, "KISYSTEM_DB": str(db)}, prefix=prefix)
    assert proc.returncode == 1
    line = one_error_line(proc)
    assert str(db) in line and "read-only" in line


# -- the last resort ----------------------------------------------------------------------

def test_an_error_no_boundary_translated_is_one_line_that_says_it_is_a_bug(monkeypatch, capsys):
    from kisystem.cli import main as cli_main
    from kisystem.paths import Paths

    def broken(*args, **kwargs):
        raise ValueError("something nobody foresaw")

    monkeypatch.delenv("KISYSTEM_DEBUG", raising=False)
    monkeypatch.setattr(Paths, "resolve", broken)
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["config", "show"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "error: unexpected ValueError: something nobody foresaw (a bug: please report it; "
        "KISYSTEM_DEBUG=1 shows the traceback)"]

