"""Every pack task, judged by its compare judge through the real sandbox: its reference
solution as the candidate passes every case and times like the reference; the naive
starters pass; the candidate never sees the reference.  The CUDA task is compiled and
skipped where no GPU is present."""

from __future__ import annotations

from pathlib import Path

import pytest

from kisystem.domains import DEFAULT_DOMAINS
from kisystem.loop.profiling import detect_tools
from kisystem.loop.taskspec import TaskSpec
from kisystem.sandbox.judge import judge_for
from kisystem.sandbox.judge.base import JudgeContext, Verdict
from kisystem.sandbox.judge.compare import CompareJudge
from kisystem.sandbox.process import Limits, detect_sandbox_level, run_sandboxed
from kisystem.taskpack import load_pack, pack_task, reference_solution

TASKS = load_pack()
NATIVE = [t for t in TASKS if t.language != "cuda"]
GPU = detect_tools().gpu


def test_the_pack_covers_the_spec_domains_with_eight_tasks_or_more():
    assert len(TASKS) >= 8 and len({t.id for t in TASKS}) == len(TASKS)
    assert {t.domain for t in TASKS} == {"C++/System", "Audio/DSP", "CUDA/Kernel"}
    assert all(t.domain in DEFAULT_DOMAINS for t in TASKS)


@pytest.mark.parametrize("task", TASKS, ids=[t.id for t in TASKS])
def test_each_task_is_judged_from_outside_and_its_reference_is_hidden(task):
    assert task.build and task.test.command == "./prog" and task.profile and task.profile.command == "./prog"
    assert task.judge and task.judge.kind == "compare" and task.judge.command == "./ref_prog"
    assert isinstance(judge_for(task), CompareJudge)
    stems = {Path(name).stem for name in task.fixed}
    assert stems == {"kbench", "task", "driver"} | ({"gpu"} if task.language == "cuda" else set()), task.id
    assert [Path(name).stem for name in task.judge.files] == ["reference"]
    reference = next(iter(task.judge.files))
    assert reference not in task.build.command and reference in task.judge.build.command
    assert not any(reference in name for name in task.fixed) and not any(
        task.judge.files[reference] in text for text in task.fixed.values())
    assert task.solution_file in task.starter and task.solution_file not in task.fixed


def test_pack_task_finds_tasks_by_id_or_short_name():
    assert pack_task("matmul").id == pack_task("pack.matmul").id == "pack.matmul"


async def _judge(tmp_path: Path, task: TaskSpec, files: dict[str, str]) -> tuple[CompareJudge, JudgeContext, Path]:
    level = detect_sandbox_level()
    ctx = JudgeContext(tmp_path / "judge", level, Limits(cpu_s=120, address_space_mb=None), seed=7)
    judge = CompareJudge(task)
    await judge.prepare(ctx)
    workspace = tmp_path / "ws"
    for name, text in {**task.fixed, **files}.items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text(text)
    assert task.build
    build = await run_sandboxed(task.build.command, workspace, task.build.timeout_s,
                                Limits(cpu_s=300, address_space_mb=None), level=level)
    assert build.succeeded, build.output[-1500:]
    return judge, ctx, workspace


def _assert_all_passed(task: TaskSpec, verdict: Verdict) -> None:
    if task.language == "cuda" and not GPU:
        assert verdict.skipped.startswith("no CUDA device") and not verdict.ok
        return
    assert verdict.total >= 9 and verdict.passed == verdict.total and verdict.ok, verdict.detail
    assert verdict.detail == ""


@pytest.mark.parametrize("task", TASKS, ids=[t.id for t in TASKS])
async def test_the_reference_as_candidate_passes_every_case_and_times_like_the_reference(tmp_path, task):
    judge, ctx, workspace = await _judge(tmp_path, task, reference_solution(task))
    _assert_all_passed(task, await judge.test(ctx, workspace, 120))
    timing = await judge.time(ctx, workspace, 120, rounds=2)
    if task.language == "cuda" and not GPU:
        assert timing.skipped and not timing.ok
        return
    assert timing.ok, timing.error
    metrics = timing.metrics()
    assert 0.05 <= metrics["reference_best_wall_s"] <= 2.0, "one bench run: about 0.1-0.5 s, start-up small"
    assert 1 / 3 < metrics["best_wall_s"] / metrics["reference_best_wall_s"] < 3


@pytest.mark.parametrize("task", NATIVE, ids=[t.id for t in NATIVE])
async def test_naive_starter_passes_every_case(tmp_path, task):
    judge, ctx, workspace = await _judge(tmp_path, task, dict(task.starter))
    _assert_all_passed(task, await judge.test(ctx, workspace, 120))
