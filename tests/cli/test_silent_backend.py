"""A backend that takes the request and never answers: a clear line within seconds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from werkzeug import Request, Response

ADD = Path(__file__).parents[2] / "examples" / "judged" / "add.toml"


def setup_home(home: Path, base_url: str, **config) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "inventory.toml").write_text(f'''
[endpoints.local]
backend = "openai"
base_url = "{base_url}"
retries = 2

[[models]]
name = "tiny"
rank = 1
timeout_s = 120
endpoint = "local"

[routes."Python/General"]
start = "tiny"
''')
    (home / "optimization_config.json").write_text(json.dumps(
        {"inventory_file": str(home / "inventory.toml"), "first_token_timeout_s": 1, **config}))


def kisystem(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KISYSTEM_")}
    env["KISYSTEM_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "kisystem", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture
def silent(httpserver):
    """Generation requests are taken and never answered (until the test ends)."""
    done = threading.Event()

    def hang(request: Request) -> Response:
        done.wait(60)
        return Response("{}", content_type="application/json")

    httpserver.expect_request("/v1/chat/completions").respond_with_handler(hang)
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "tiny"}]})
    yield httpserver.url_for("").rstrip("/")
    done.set()


def test_models_ask_on_a_silent_backend_is_one_line_after_the_first_token_budget(tmp_path, silent):
    setup_home(tmp_path, silent)
    started = time.monotonic()
    proc = kisystem(tmp_path, "models", "ask", "tiny", "hi")
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 3 and "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no first token within" in lines[0], lines
    assert time.monotonic() - started < 20  # not the 120 s of the model's total budget, and no retries


def test_run_on_a_silent_backend_ends_with_the_reason_instead_of_silence(tmp_path, silent):
    setup_home(tmp_path, silent, max_optimization_iterations=2)
    started = time.monotonic()
    proc = kisystem(tmp_path, "run", str(ADD))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Traceback" not in out
    lines = " ".join(proc.stderr.split()).split("example.add it ")[1:]  # piped lines wrap at 120 columns
    iterations = [line for line in lines if "no answer" in line]
    assert len(iterations) == 2 and all("no first token within" in it for it in iterations), out
    assert any("no token yet after 15 s" in line for line in lines), out  # the line while it waits
    assert time.monotonic() - started < 60
