"""`kisystem ray node | status` and `kisystem queue run --executor ray`, through the real entry point."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from kisystem.errors import UsageError
from kisystem.executors.cluster import parse_serves
from kisystem.loop.taskspec import dump_task
from kisystem.store.learning import LearningStore
from tests.executors.support import declaring_nodes, events
from tests.queue.support import GOOD, add_task


def kisystem(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KISYSTEM_", "RAY_"))}
    clean.update(KISYSTEM_HOME=str(home), **(env or {}))
    return subprocess.run([sys.executable, "-m", "kisystem", *args], check=False, capture_output=True, text=True,
                          env=clean, timeout=180)  # fmt: skip


def fake_backend(home: Path, httpserver, model: str) -> None:
    """An OpenAI-compatible server that answers every prompt right, and an inventory naming it."""
    chunks = [{"choices": [{"index": 0, "delta": {"content": GOOD}}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": model}]})
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_data(
        body, content_type="text/event-stream")
    home.mkdir(parents=True, exist_ok=True)
    (home / "inventory.toml").write_text(
        f'[endpoints.local]\nbackend = "openai"\nbase_url = "{httpserver.url_for("").rstrip("/")}"\n'
        f'[[models]]\nname = "{model}"\nrank = 1\ntimeout_s = 20\nendpoint = "local"\n'
        f'[routes."Python/General"]\nstart = "{model}"\n')
    (home / "optimization_config.json").write_text(json.dumps({"inventory_file": str(home / "inventory.toml")}))


@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 18590)


def test_serves_takes_model_names_with_colons_and_slots() -> None:
    assert parse_serves(["qwen2.5-coder:32b=2", "phi4"]) == {"qwen2.5-coder:32b": 2.0, "phi4": 1.0}
    for bad in ("=2", "m=0", "m=two", "a=b=2"):
        with pytest.raises(UsageError):
            parse_serves([bad])


def test_node_wraps_ray_start_with_the_model_resources(tmp_path: Path, httpserver) -> None:
    httpserver.expect_request("/api/tags").respond_with_json({"models": [{"name": "llama3:8b"}, {"name": "phi4"}]})
    proc = kisystem(tmp_path, "ray", "node", "--serves", "qwen2.5-coder:32b=2", "--ollama", httpserver.url_for(""),
                    "--serves", "phi4=3", "--address", "10.0.0.1:6379", "--dry-run", "--", "--num-cpus", "8")
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout)
    assert cmd[1:4] == ["-m", "ray.scripts.scripts", "start"] and cmd[4:6] == ["--address", "10.0.0.1:6379"]
    resources = json.loads(cmd[cmd.index("--resources") + 1])
    assert resources == {"model:llama3:8b": 1, "model:phi4": 3, "model:qwen2.5-coder:32b": 2}
    assert cmd[-2:] == ["--num-cpus", "8"]
    head = shlex.split(kisystem(tmp_path, "ray", "node", "--serves", "m", "--dry-run").stdout)
    assert "--head" in head and "--address" not in head


def test_node_refuses_what_it_sets_itself(tmp_path: Path) -> None:
    for args in ((), ("--serves", "m", "--", "--resources", "{}"), ("--serves", "m=0")):
        proc = kisystem(tmp_path, "ray", "node", *args, "--dry-run")
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1


def test_without_ray_the_ray_executor_says_how_to_install_it(tmp_path: Path) -> None:
    hidden = tmp_path / "no-ray" / "ray"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('No module named ray')\n")
    proc = kisystem(tmp_path, "queue", "run", "--executor", "ray", env={"PYTHONPATH": str(hidden.parent)})
    assert proc.returncode == 2
    assert proc.stderr == "error: the ray executor needs Ray: pip install 'kisystem[ray]'\n"


def test_status_shows_each_node_with_its_model_slots(ray_cluster, tmp_path: Path) -> None:
    proc = kisystem(tmp_path, "ray", "status", "--address", ray_cluster.address, "--json")
    assert proc.returncode == 0, proc.stderr
    nodes = json.loads(proc.stdout)["nodes"]
    served = {m: v["slots"] for n in nodes if n["alive"] for m, v in n["models"].items()}
    assert served == {"small": 2, "large": 1}
    table = kisystem(tmp_path, "ray", "status", "--address", ray_cluster.address)
    assert table.returncode == 0 and "small 0/2" in table.stdout and "large 0/1" in table.stdout


def test_queue_run_on_ray_drains_the_queue_on_the_serving_node(ray_cluster, tmp_path: Path, httpserver) -> None:
    home = tmp_path / "home"
    fake_backend(home, httpserver, "small")  # served by the head node; its workers call this server
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    for i in range(3):
        (tasks / f"add{i}.toml").write_text(dump_task(add_task(i)))
    assert kisystem(home, "queue", "add", str(tasks)).returncode == 0
    proc = kisystem(home, "queue", "run", "--executor", "ray", "--address", ray_cluster.address)
    assert proc.returncode == 0, proc.stderr
    assert "3 claimed" in proc.stderr and "3 succeeded" in proc.stderr
    with LearningStore.open(home / "learning.db") as learning:
        runs = learning.recent_runs(10)
        placed = events(learning, "node")
    assert sorted(r.outcome for r in runs) == ["success"] * 3  # one learning record per task
    assert [e["node"] for e in placed] == [declaring_nodes()["small"]] * 3
