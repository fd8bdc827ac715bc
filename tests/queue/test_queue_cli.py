"""`kisystem queue add | run | status | cancel | retry` and `kisystem bench queue`, through the real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kisystem.loop.taskspec import dump_task
from tests.queue.support import GOOD, add_task


def kisystem(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KISYSTEM_")}
    env["KISYSTEM_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "kisystem", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)  # fmt: skip


@pytest.fixture
def tasks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tasks"
    folder.mkdir()
    for i, priority in enumerate((None, 90.0, None)):
        (folder / f"add{i}.toml").write_text(dump_task(add_task(i, priority=priority)))
    return folder


def test_add_is_idempotent_and_status_shows_the_cost_aware_order(tmp_path: Path, tasks_dir: Path) -> None:
    first = kisystem(tmp_path, "queue", "add", str(tasks_dir), "--json")
    assert first.returncode == 0, first.stderr
    assert [a["added"] for a in json.loads(first.stdout)] == [True, True, True]
    again = kisystem(tmp_path, "queue", "add", str(tasks_dir / "add1.toml"))
    assert again.returncode == 0 and "#2 add-1: already in the queue (queued), not added" in again.stdout
    assert "UNTRUSTED: no [judge]" in again.stdout  # add.toml reports its own result
    status = json.loads(kisystem(tmp_path, "queue", "status", "--json").stdout)
    assert status["counts"]["queued"] == 3
    assert [n["id"] for n in status["next"]] == [2, 1, 3]  # the explicit priority 90 beats the neutral 50
    assert {"priority_score", "eta_s", "priority_eff", "model"} <= set(status["next"][0])
    text = kisystem(tmp_path, "queue", "status")
    assert "PriorityEff" in text.stdout and "queued 3" in text.stdout


def test_cancel_and_retry(tmp_path: Path, tasks_dir: Path) -> None:
    kisystem(tmp_path, "queue", "add", str(tasks_dir / "add0.toml"))
    refused = kisystem(tmp_path, "queue", "retry", "1")
    assert refused.returncode == 2 and refused.stderr.strip().startswith("error: task 1 is queued")
    assert "cancelled" in kisystem(tmp_path, "queue", "cancel", "1").stdout
    assert "queued again" in kisystem(tmp_path, "queue", "retry", "1").stdout
    missing = kisystem(tmp_path, "queue", "cancel", "42")
    assert missing.returncode == 2 and "no queued task with id 42" in missing.stderr


def test_status_of_a_home_without_a_database(tmp_path: Path) -> None:
    proc = kisystem(tmp_path, "queue", "status")
    assert proc.returncode == 0 and "empty" in proc.stdout
    assert not (tmp_path / "learning.db").exists()


def _fake_backend(home: Path, httpserver) -> None:
    chunks = [{"choices": [{"index": 0, "delta": {"content": GOOD}}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "tiny"}]})
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_data(
        body, content_type="text/event-stream")
    inv = home / "inventory.toml"
    home.mkdir(parents=True, exist_ok=True)
    inv.write_text(f'[endpoints.local]\nbackend = "openai"\nbase_url = "{httpserver.url_for("").rstrip("/")}"\n'
                   '[[models]]\nname = "tiny"\nrank = 1\ntimeout_s = 20\nendpoint = "local"\n'
                   '[routes."Python/General"]\nstart = "tiny"\n')
    (home / "optimization_config.json").write_text(json.dumps({"inventory_file": str(inv)}))


def test_run_drains_the_queue_with_plain_lines_when_not_on_a_terminal(tmp_path: Path, tasks_dir: Path,
                                                                      httpserver) -> None:
    _fake_backend(tmp_path, httpserver)
    assert kisystem(tmp_path, "queue", "add", str(tasks_dir)).returncode == 0
    proc = kisystem(tmp_path, "queue", "run", "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "#2 add-1: leased" in proc.stderr and "#2 add-1: succeeded" in proc.stderr
    assert "3 claimed" in proc.stderr and "3 succeeded" in proc.stderr
    status = json.loads(kisystem(tmp_path, "queue", "status", "--json").stdout)
    assert status["counts"]["succeeded"] == 3
    assert {t["judged_by"] for t in status["tasks"]} == {"self-reported"}
    assert "UNTRUSTED" in kisystem(tmp_path, "queue", "status").stdout
    again = kisystem(tmp_path, "queue", "run")
    assert again.returncode == 0 and "0 claimed" in again.stderr


def test_bench_queue_prints_the_three_figures(tmp_path: Path) -> None:
    proc = kisystem(tmp_path, "bench", "queue", "--tasks", "60", "--ops", "30")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "B done 3:00, A done 8:00" in out and "A done 5:00, B done 8:00" in out
    assert "vs FIFO" in out and "cost-aware (learned ETA)" in out and "lower bound" in out
    assert "add + claim + complete:" in out


def test_the_view_prints_one_plain_line_per_state_change_off_a_terminal() -> None:
    from io import StringIO

    from rich.console import Console

    from kisystem.cli.queue_cmd import QueueView
    from kisystem.queue.runner import QueueEvent

    out = StringIO()
    with QueueView(Console(file=out, force_terminal=False, width=200), 1) as view:
        view(QueueEvent(1, "add-0", "running"))
        view(QueueEvent(1, "add-0", "running", "iter 1 · small · build"))
        view(QueueEvent(1, "add-0", "succeeded", "score 100"))
        view(QueueEvent(2, "", "queued", "recovered"))
    assert out.getvalue().splitlines() == ["#1 add-0: running", "#1 add-0: succeeded · score 100",
                                           "#2 ?: queued · recovered"]
    assert view.progress.tasks[0].completed == 1 and view.progress.tasks[0].total == 2
