"""One line per finished iteration (model, phase, score, error type), the one format of `run`,
`demo` and `queue run`, printed whether or not stderr is a terminal."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import replace
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console
from werkzeug import Request, Response

from kisystem.cli.live import IterationLines, LiveView, iteration_line, priority_note
from kisystem.config import OptimizationConfig
from kisystem.errors import BackendTimeout
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop import supervisor as supervisor_module
from kisystem.loop.supervisor import LoopEvent, Supervisor
from kisystem.loop.taskspec import load_task
from kisystem.models.inventory import parse_inventory
from kisystem.store.learning import LearningStore
from tests.loop.fakes import ScriptedModel

ADD_SPEC = Path(__file__).parents[1] / "loop" / "data" / "loop" / "add.toml"
GOOD = "```python\n# file: solution.py\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
INVENTORY = parse_inventory({
    "endpoints": {"e": {"backend": "openai", "base_url": "http://127.0.0.1:9"}},
    "models": [{"name": n, "rank": i, "timeout_s": 30, "endpoint": "e", "mode": "chat"}
               for i, n in enumerate(("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"), 1)],
    "routes": {"Python/General": {"start": "qwen2.5-coder-0.5b", "escalation": ["qwen2.5-coder-1.5b"]}},
}, "test inventory")  # fmt: skip


def test_the_line_names_task_iteration_model_phase_score_and_error() -> None:
    assert iteration_line("HumanEval_163", 2, "qwen2.5-coder-0.5b", "test", 0.0, "LOGIC") == \
        "HumanEval_163  it 2  qwen2.5-coder-0.5b  test  score 0  LOGIC"  # fmt: skip
    assert iteration_line("t", 1, "m", "profile", 87.4) == "t  it 1  m  profile  score 87"


def event(kind: str, iteration: int = 1, run: str = "r1", model: str = "m", **data) -> LoopEvent:
    return LoopEvent(kind, f"task-{run}", run, iteration, model, data)


def test_interleaved_runs_get_their_own_phase_and_a_failed_generation_gets_its_reason() -> None:
    lines = IterationLines()
    fed = [
        event("generate"), event("generate", run="r2"), event("build", run="r2"), event("test"),
        event("score", score=0.0, error="LOGIC"),  # r1: failed in test
        event("score", run="r2", score=0.0, error="COMPILATION"),  # r2: failed in build
        event("generate", 2), event("score", 2, score=None, error="no first token within 30 s"),  # no answer
        event("generate", 3), event("score", 3, score=0.0, error="no code in the answer"),
        event("generate", 2, run="r2"), event("skip", 2, run="r2"),  # a skip explains itself
        event("generate", 4), event("exit", 4, outcome="exhausted", reason="every model of the chain failed"),
    ]
    got = [line for e in fed for line in lines.feed(e)]
    assert got == [
        "task-r1  it 1  m  test  score 0  LOGIC",
        "task-r2  it 1  m  build  score 0  COMPILATION",
        "task-r1  it 2  m  generate  no answer  no first token within 30 s",
        "task-r1  it 3  m  generate  score 0  no code in the answer",
    ]


def test_an_interrupted_iteration_prints_no_line() -> None:
    lines = IterationLines()
    assert lines.feed(event("generate")) == []
    assert lines.feed(event("exit", outcome="interrupted", reason="signal")) == []


async def test_the_loop_with_a_scripted_model_prints_one_line_per_iteration(tmp_path: Path) -> None:
    out = StringIO()
    view = LiveView(Console(file=out, force_terminal=False, width=200))
    model = ScriptedModel({"qwen2.5-coder-0.5b": [WRONG, BackendTimeout("no first token within 5 s")],
                           "qwen2.5-coder-1.5b": [GOOD]})  # fmt: skip
    cfg = replace(OptimizationConfig(), stoploss_per_model=2)
    with LearningStore.open(tmp_path / "learning.db") as store, view:
        sup = Supervisor(cfg, INVENTORY, model, store, AttemptRunner(PhaseRunner(cfg), tmp_path / "ws"), on_event=view)
        result = await sup.run_task(load_task(ADD_SPEC))
    assert result.outcome == "success" and result.iterations == 3
    printed = [line for line in out.getvalue().splitlines() if "  it " in line]
    assert printed == ["add  it 1  qwen2.5-coder-0.5b  test  score 0  LOGIC",
                       "add  it 2  qwen2.5-coder-0.5b  generate  no answer  no first token within 5 s",
                       "add  it 3  qwen2.5-coder-1.5b  test  score 100"]  # fmt: skip


def test_the_priority_note_says_what_it_means_and_what_follows() -> None:
    note = priority_note("Python/General")
    assert note.startswith("Python/General is a priority domain: top 3 by P(d)")
    assert "kisystem meta explain Python/General" in note and "the queue runs its tasks before" in note
    out = StringIO()
    view = LiveView(Console(file=out, force_terminal=False, width=400))
    for run in ("r1", "r2"):
        view(LoopEvent("priority", f"task-{run}", run, 0, "m", {"domain": "Python/General", "top": 3}))
    assert out.getvalue().splitlines() == [note]  # once per domain, not per task


# -- through the real entry point, against a local HTTP backend -------------------------------------


def kisystem(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KISYSTEM_")}
    env["KISYSTEM_HOME"] = str(home)
    return subprocess.run([sys.executable, "-m", "kisystem", *args], capture_output=True, text=True, env=env,
                          timeout=120)  # fmt: skip


def sse(text: str) -> str:
    chunks = [{"choices": [{"index": 0, "delta": {"content": text}}]},
              {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}]
    return "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"


@pytest.fixture
def backend(tmp_path: Path, httpserver) -> Path:
    """A home whose one model 'tiny' answers wrong first, then right."""
    answers = [WRONG, GOOD]

    def answer(request: Request) -> Response:
        return Response(sse(answers.pop(0) if len(answers) > 1 else answers[0]), content_type="text/event-stream")

    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "tiny"}]})
    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(answer)
    home = tmp_path / "home"
    home.mkdir()
    inv = home / "inventory.toml"
    inv.write_text(f'[endpoints.local]\nbackend = "openai"\nbase_url = "{httpserver.url_for("").rstrip("/")}"\n'
                   '[[models]]\nname = "tiny"\nrank = 1\ntimeout_s = 20\nendpoint = "local"\n'
                   '[routes."Python/General"]\nstart = "tiny"\n')  # fmt: skip
    (home / "optimization_config.json").write_text(json.dumps({"inventory_file": str(inv)}))
    return home


EXPECTED = ["add  it 1  tiny  test  score 0  LOGIC", "add  it 2  tiny  test  score 100"]


def iteration_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("add  it ")]


def test_run_prints_each_iteration_when_piped(backend: Path) -> None:
    proc = kisystem(backend, "run", str(ADD_SPEC), "--json")
    assert proc.returncode == 0, proc.stderr
    assert iteration_lines(proc.stderr) == EXPECTED
    assert json.loads(proc.stdout)[0]["iterations"] == 2  # stdout stays clean JSON


def test_queue_run_prints_each_iteration_when_piped(backend: Path) -> None:
    assert kisystem(backend, "queue", "add", str(ADD_SPEC)).returncode == 0
    proc = kisystem(backend, "queue", "run")
    assert proc.returncode == 0, proc.stderr
    assert iteration_lines(proc.stderr) == EXPECTED
    assert "#1 add: succeeded" in proc.stderr


async def test_a_slow_first_token_gets_a_waiting_line_while_it_lasts(tmp_path: Path, monkeypatch) -> None:
    class Slow(ScriptedModel):
        async def generate(self, request, on_text=None):
            await asyncio.sleep(0.35)
            return await super().generate(request, on_text)

    monkeypatch.setattr(supervisor_module, "WAIT_NOTICE_S", 0.1)
    out = StringIO()
    view = LiveView(Console(file=out, force_terminal=False, width=200))
    cfg = replace(OptimizationConfig(), stoploss_per_model=2)
    with LearningStore.open(tmp_path / "learning.db") as store, view:
        sup = Supervisor(cfg, INVENTORY, Slow({"qwen2.5-coder-0.5b": [GOOD]}), store,
                         AttemptRunner(PhaseRunner(cfg), tmp_path / "ws"), on_event=view)
        result = await sup.run_task(load_task(ADD_SPEC))
    assert result.outcome == "success"
    waiting = [line for line in out.getvalue().splitlines() if "no token yet" in line]
    assert 2 <= len(waiting) <= 3 and waiting[0].startswith("add  it 1  qwen2.5-coder-0.5b  no token yet after")
