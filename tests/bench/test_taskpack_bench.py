"""bench taskpack on a real pack task (matmul, benchmark at 128 x 128) with a scripted model:
the real sandbox, gcc and compare judge decide and time; only the model is a fake."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from kisystem.bench import taskpack as tp
from kisystem.bench.taskpack import TaskRow, bench_task, cpu_tasks, final_attempt
from kisystem.cli import bench_cmd
from kisystem.cli import main as cli_main
from kisystem.cli.bench_taskpack_cmd import taskpack
from kisystem.config import OptimizationConfig
from kisystem.errors import UsageError
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.profiling import Tools, TwoTierProfiler
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import TaskSpec
from kisystem.loop.workspace import WorkspaceKeeping
from kisystem.models.inventory import parse_inventory
from kisystem.store.learning import LearningStore
from kisystem.taskpack import pack_task, reference_solution
from tests.loop.fakes import ScriptedModel

INVENTORY = parse_inventory({
    "endpoints": {"e": {"backend": "openai", "base_url": "http://127.0.0.1:9"}},
    "models": [{"name": "small", "rank": 1, "timeout_s": 30, "endpoint": "e", "mode": "chat"}],
    "routes": {"C++/System": {"start": "small"}},
}, "test inventory")

SLOW_STARTER = """#include "task.h"

void matmul(int n, const float *a, const float *b, float *c) {
    for (int rep = 0; rep < 4; rep++)  /* deliberately slowed: the same work four times */
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                float sum = 0.0f;
                for (int k = 0; k < n; k++) sum += a[i * n + k] * b[k * n + j];
                c[i * n + j] = sum;
            }
}
"""
WRONG = """```c
#include "task.h"

void matmul(int n, const float *a, const float *b, float *c) {
    for (int i = 0; i < n * n; i++) c[i] = a[i] + b[i];
}
```"""


def small_matmul() -> TaskSpec:
    """matmul with a 128 x 128 benchmark (candidate and reference alike), a slowed starter, 2 iterations."""
    task = pack_task("matmul")
    assert task.profile and task.judge
    size = "export KISYSTEM_BENCH_SIZE=128; "
    return replace(task, starter={task.solution_file: SLOW_STARTER}, max_iterations=2,
                   profile=replace(task.profile, command=size + task.profile.command),
                   judge=replace(task.judge, command=size + (task.judge.command or "")))


def answer(files: dict[str, str]) -> str:
    (code,) = files.values()
    return f"```c\n{code}```"


@pytest.fixture
def store(tmp_path):
    with LearningStore.open(tmp_path / "runs.db") as s:
        yield s


def supervisor(tmp_path: Path, store: LearningStore, answers: list[str]) -> Supervisor:
    cfg = replace(OptimizationConfig(), stoploss_per_model=1)
    phases = PhaseRunner(cfg)
    attempts = AttemptRunner(phases, tmp_path / "ws", profiler=TwoTierProfiler(phases, tools=Tools()),
                             keeping=WorkspaceKeeping(keep_all=True))
    return Supervisor(cfg, INVENTORY, ScriptedModel({"small": answers}), store, attempts)


async def test_a_model_answering_the_reference_gets_a_fast_passing_final_candidate(tmp_path, store):
    task = small_matmul()
    ref = answer(reference_solution(task))
    row = await bench_task(supervisor(tmp_path, store, [ref, ref]), task, rounds=3)
    assert (row.task, row.model, row.passes) == ("pack.matmul", "small", True)
    assert row.outcome in ("success", "failed") and row.iterations >= 1 and row.score >= 80  # under load: < 95
    assert row.starter_s and row.final_s and row.reference_s
    assert row.speedup and row.speedup > 2, row  # the reference against a 4x slowed naive loop
    assert row.vs_reference and 0.4 < row.vs_reference < 2.5, row  # the reference against itself
    assert len(row.rounds["starter"]) == len(row.rounds["final"]) == 3 and len(row.rounds["reference"]) == 6
    assert row.note == "" and row.final_code == reference_solution(task)["solution.c"]
    assert list((tmp_path / "ws").iterdir()) == []  # the kept workspaces are removed after timing


async def test_a_model_answering_wrong_code_fails_and_only_the_starter_is_timed(tmp_path, store):
    task = small_matmul()
    row = await bench_task(supervisor(tmp_path, store, [WRONG]), task, rounds=2)
    assert (row.outcome, row.iterations, row.model, row.passes) == ("exhausted", 1, "", False)
    assert row.starter_s and row.reference_s and row.starter_s > row.reference_s
    assert row.final_s is None and row.speedup is None and row.vs_reference is None
    assert "no attempt passed" in row.note and "final" not in row.rounds and row.final_code == ""


def test_the_final_candidate_is_the_earliest_best_scoring_passing_attempt(store):
    run = store.start_run("t", "C++/System", "small")
    for iteration, model, score, error in ((1, "small", 50.0, "TEST_FAILURE"), (2, "small", 85.0, None),
                                           (3, "big", 92.0, None), (4, "big", 99.0, "TEST_FAILURE"),
                                           (5, "small", 92.0, None)):
        store.append_event(run, "score", {"iteration": iteration, "model": model, "score": score, "error": error})
    store.append_event(run, "test", {"iteration": 5, "model": "small", "ok": True})
    assert final_attempt(store, run) == (3, "big", 92.0)
    other = store.start_run("t", "C++/System", "small")
    store.append_event(other, "score", {"iteration": 1, "model": "small", "score": 0.0, "error": "COMPILATION"})
    assert final_attempt(store, other) is None


def test_cpu_tasks_leave_out_cuda_and_name_the_allowed_ids_for_a_bad_one():
    ids = [t.id for t in cpu_tasks()]
    assert len(ids) >= 7 and "pack.matmul" in ids and all(pack_task(i).language != "cuda" for i in ids)
    assert [t.id for t in cpu_tasks(["matmul", "pack.fir-filter", "matmul"])] == ["pack.fir-filter", "pack.matmul"]
    for bad in ("nope", "reduce"):
        with pytest.raises(UsageError, match=r"no CPU task .* \(allowed: .*pack\.matmul"):
            cpu_tasks([bad])


def test_a_bad_task_is_one_error_line_with_exit_2(tmp_path, capsys):
    cli_main._register_commands()
    bench_cmd.bench_group.add_command(taskpack)
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(["--home", str(tmp_path), "bench", "taskpack", "--task", "reduce"])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no CPU task 'reduce'") and "pack.matmul" in lines[0]


def test_the_cli_prints_a_table_with_totals_and_saves_json(tmp_path, monkeypatch):
    rows = [TaskRow("pack.matmul", "success", 3, "small", True, 2.0, 0.5, 0.25, 97.0),
            TaskRow("pack.fir-filter", "exhausted", 4, "", False, 1.0, None, 0.5, note="no attempt passed")]
    seen = {}

    async def fake_run(config, inventory, paths, tasks, db, rounds, progress, on_event, warn):
        seen.update(tasks=[t.id for t in tasks], db=db, rounds=rounds)
        for number, (task, row) in enumerate(zip(tasks, rows), 1):
            progress(number, task, None)
            progress(number, task, row)
        return rows

    monkeypatch.setattr(tp, "run_taskpack", fake_run)
    cli_main._register_commands()
    bench_cmd.bench_group.add_command(taskpack)
    out = CliRunner().invoke(cli_main.cli, ["--home", str(tmp_path), "bench", "taskpack", "--task", "matmul",
                                            "--task", "fir-filter", "--rounds", "2"])
    assert out.exit_code == 0, out.output
    assert seen == {"tasks": ["pack.fir-filter", "pack.matmul"], "db": tmp_path / "bench" / "taskpack-runs.db",
                    "rounds": 2}
    assert "4.00×" in out.output and "2.00×" in out.output and "total" in out.output and "1/2" in out.output
    (saved,) = (tmp_path / "bench").glob("taskpack-*.json")
    data = json.loads(saved.read_text())
    assert [t["task"] for t in data["tasks"]] == ["pack.matmul", "pack.fir-filter"]
    assert data["tasks"][0]["speedup"] == 4.0 and data["tasks"][0]["vs_reference"] == 2.0
    assert data["totals"]["passing"] == 1 and data["totals"]["all_pass"] is False and data["rounds"] == 2
