"""`kisystem serve` as a user runs it: refusals are one line, and a real server answers on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kisystem.paths import DASHBOARD_TOKEN_ENV
from tests.cli.support import kisystem, one_error_line
from tests.web.support import Seeded

PORTS = range(18560, 18600)  # the tests' own range (185xx), loopback only


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.skip("no free port in 18560-18599")


def test_refuses_a_non_loopback_host_without_a_token(tmp_path: Path) -> None:
    proc = kisystem(tmp_path, "serve", "--host", "0.0.0.0", "--port", "18599")
    assert proc.returncode == 2
    line = one_error_line(proc)
    assert "refusing to serve the dashboard on 0.0.0.0" in line and DASHBOARD_TOKEN_ENV in line


def test_a_missing_database_is_one_line(tmp_path: Path) -> None:
    proc = kisystem(tmp_path, "serve", "--port", "18599")
    assert proc.returncode == 2
    assert one_error_line(proc) == (f"error: no learning database at {tmp_path / 'learning.db'}: run a task first "
                                    "(kisystem run), or point --db / KISYSTEM_DB at one")


def test_a_port_in_use_is_one_line(seeded: Seeded) -> None:
    port = _free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        proc = kisystem(seeded.db.root, "serve", "--port", str(port))
    assert proc.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in one_error_line(proc)


def test_serves_pages_and_metrics_on_loopback(seeded: Seeded) -> None:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KISYSTEM_")}
    proc = subprocess.Popen([sys.executable, "-m", "kisystem", "--home", str(seeded.db.root), "serve", "--port",
                             str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(f"{base}/healthz", proc)
        overview = httpx.get(f"{base}/", timeout=10)
        assert overview.status_code == 200 and "In flight" in overview.text and "long" in overview.text
        families = {f.name for f in text_string_to_metric_families(httpx.get(f"{base}/metrics", timeout=10).text)}
        assert "kisystem_runs" in families
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    assert f"kisystem dashboard on {base}/" in out
    assert "Traceback" not in err


def _wait_until_up(url: str, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited with {proc.returncode}: {proc.stderr.read()}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout_s} s")
