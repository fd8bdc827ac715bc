"""Every pack task passes its own tests with its reference solution (and its naive
starter), through the real sandboxed phases; the bench harness speaks the protocol.
CUDA tasks are compiled only where no GPU is present, and say so."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from kisystem.config import OptimizationConfig
from kisystem.domains import DEFAULT_DOMAINS
from kisystem.loop.categorizer import Phase
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.profiling import detect_tools, parse_bench_lines
from kisystem.loop.scoring import parse_test_counts
from kisystem.loop.taskspec import PhaseSpec, TaskSpec
from kisystem.loop.workspace import Workspace
from kisystem.taskpack import load_pack, pack_task, reference_solution

TASKS = load_pack()
NATIVE = [t for t in TASKS if t.language != "cuda"]
GPU = detect_tools().gpu
SMALL = {"KISYSTEM_BENCH_SIZE": "64", "KISYSTEM_BENCH_WARMUP": "0", "KISYSTEM_BENCH_REPEATS": "2"}


def test_the_pack_covers_the_spec_domains_with_eight_tasks_or_more():
    assert len(TASKS) >= 8 and len({t.id for t in TASKS}) == len(TASKS)
    assert {t.domain for t in TASKS} == {"C++/System", "Audio/DSP", "CUDA/Kernel"}
    assert all(t.domain in DEFAULT_DOMAINS for t in TASKS)
    for task in TASKS:
        assert task.build and task.test and task.profile, task.id
        stems = {name.rsplit("/", 1)[-1].split(".")[0] for name in task.fixed}
        assert {"kbench", "task", "reference", "test", "bench"} <= stems, task.id
        assert task.solution_file in task.starter and task.solution_file not in task.fixed


def test_pack_task_finds_tasks_by_id_or_short_name():
    assert pack_task("matmul").id == pack_task("pack.matmul").id == "pack.matmul"


async def _run(phases: PhaseRunner, task: TaskSpec, workspace: Workspace, phase: Phase, spec: PhaseSpec):
    run = await phases.run(phase, spec, workspace, task.fixed, task.language)
    assert run.ok, f"{task.id} {phase}: {run.result.output[-1500:]}"
    return run.result.output


async def _build_and_test(tmp_path, task: TaskSpec, files: dict[str, str]) -> tuple[PhaseRunner, Workspace, str]:
    phases = PhaseRunner(OptimizationConfig())
    workspace = Workspace.create(tmp_path, "pack", 0)
    workspace.write_files(files)
    await _run(phases, task, workspace, Phase.BUILD, task.build)
    return phases, workspace, await _run(phases, task, workspace, Phase.TEST, task.test)


def _assert_tests_ran(task: TaskSpec, output: str) -> None:
    if task.language == "cuda" and not GPU:
        assert "KISYSTEM_SKIP no CUDA device" in output and "compiled only" in output
        return
    counts = parse_test_counts(output)
    assert counts and counts.total >= 5 and counts.passed == counts.total, output[-1500:]
    assert re.search(r"^seed=\d+", output, re.MULTILINE), "inputs must be fresh and random every run"


@pytest.mark.parametrize("task", TASKS, ids=[t.id for t in TASKS])
async def test_reference_solution_passes_its_tests_and_the_bench_speaks_the_protocol(tmp_path, task):
    phases, workspace, output = await _build_and_test(tmp_path, task, reference_solution(task))
    _assert_tests_ran(task, output)
    exports = " ".join(f"{k}={v}" for k, v in SMALL.items())
    bench = await _run(phases, task, workspace, Phase.PROFILE,
                       replace(task.profile, command=f"export {exports}; {task.profile.command}"))
    if task.language == "cuda" and not GPU:
        assert "KISYSTEM_SKIP" in bench
        return
    candidate, reference = parse_bench_lines(bench)
    assert len(candidate) == len(reference) == 2 and min(candidate + reference) >= 0


@pytest.mark.parametrize("task", NATIVE, ids=[t.id for t in NATIVE])
async def test_naive_starter_passes_its_tests(tmp_path, task):
    _, _, output = await _build_and_test(tmp_path, task, dict(task.starter))
    _assert_tests_ran(task, output)


async def test_a_wrong_solution_fails_the_tests(tmp_path):
    task = pack_task("histogram")
    wrong = task.starter[task.solution_file].replace("bins[data[i]]++", "bins[data[i] & 0x7f]++")
    phases = PhaseRunner(OptimizationConfig())
    workspace = Workspace.create(tmp_path, "pack", 0)
    workspace.write_files({task.solution_file: wrong})
    await _run(phases, task, workspace, Phase.BUILD, task.build)
    run = await phases.run(Phase.TEST, task.test, workspace, task.fixed, task.language)
    counts = parse_test_counts(run.result.output)
    assert not run.ok and counts and counts.passed < counts.total
