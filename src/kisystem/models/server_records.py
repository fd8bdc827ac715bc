"""Which process serves an embedded model's port, so that a server left behind by a crashed
kisystem is found and replaced instead of silently reused.

EmbeddedFleet writes ``HOME/run/port-<port>.json`` (the server's pid and the pid of the
kisystem that owns it) when it starts a server and removes it when it stops it.  A healthy
port is then one of: ``shared`` (its owner still runs: another kisystem on this home, reuse
it), ``orphan`` (its owner is gone, the server is not: stop it and start afresh) or
``foreign`` (no record: a server the user started; reused only if it serves the model).
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Literal

PortState = Literal["shared", "orphan", "foreign"]


def record_path(home: Path, port: int) -> Path:
    return home / "run" / f"port-{port}.json"


def record(home: Path, ports: list[int], server_pid: int) -> None:
    """Note that ``server_pid``, started by this process, serves ``ports``."""
    for port in ports:
        path = record_path(home, port)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"server_pid": server_pid, "owner_pid": os.getpid()}))
        except OSError:
            pass  # without a record a crash's leftover is reused as "foreign", as before records existed


def forget(home: Path, ports: list[int], server_pid: int) -> None:
    for port in ports:
        if _read(home, port).get("server_pid") == server_pid:
            record_path(home, port).unlink(missing_ok=True)


def state_of(home: Path, port: int) -> tuple[PortState, int | None]:
    """How a healthy server on ``port`` came to be, and its pid when kisystem started it."""
    entry = _read(home, port)
    server, owner = entry.get("server_pid"), entry.get("owner_pid")
    if not isinstance(server, int) or not _is_model_server(server):
        return "foreign", None
    if isinstance(owner, int) and owner != os.getpid() and _alive(owner):
        return "shared", server
    return "orphan", server


def stop_orphan(pid: int, wait_s: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``wait_s``, a server whose owner is gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while _is_model_server(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _is_model_server(pid):
            return


def _read(home: Path, port: int) -> dict:
    try:
        data = json.loads(record_path(home, port).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_model_server(pid: int) -> bool:
    """True when ``pid`` runs ``kisystem ... models serve`` (not a reused pid, not a zombie)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return _alive(pid) if not Path("/proc").is_dir() else False
    return b"serve" in cmdline and b"models" in cmdline and "\nState:\tZ" not in status
