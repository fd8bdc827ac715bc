"""The README's judged examples work as documented (the Python one also runs in tests/loop/test_judged_loop.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kisystem.config import OptimizationConfig
from kisystem.loop.categorizer import Phase
from kisystem.loop.phases import PhaseRunner, limits_for
from kisystem.loop.taskspec import load_task
from kisystem.loop.workspace import Workspace
from kisystem.sandbox.judge.session import judged_run

EXAMPLES = Path(__file__).parents[1] / "examples" / "judged"
FLOAT_SUM = """#include "task.h"
double sum_squares(const float *x, long n) {
    float sum = 0.0f;  /* float arithmetic: off beyond the example's 1e-9 tolerance */
    for (long i = 0; i < n; i++) sum += x[i] * x[i];
    return sum;
}
"""


@pytest.fixture
def sumsq():
    return load_task(EXAMPLES / "sumsq.toml")


async def _judged(task, root: Path, code: str, *, timed: bool = False):
    phases = PhaseRunner(OptimizationConfig())
    async with judged_run(task, root, phases.level, limits_for(task.language, task.test.timeout_s)) as judged:
        assert judged is not None
        workspace = Workspace.create(root, "run", 0)
        workspace.write_files({task.solution_file: code})
        build = await phases.run(Phase.BUILD, task.build, workspace, task.fixed, task.language)
        assert build.ok, build.result.output
        test = await phases.run_judged(judged, workspace, task.fixed, task.test.timeout_s)
        timing = await phases.time_judged(judged, workspace, task.fixed, 60, 3) if timed else None
        return test, timing


def test_the_c_example_hides_its_reference_from_the_candidate(sumsq):
    assert "sumsq/reference.c" not in sumsq.fixed and "sumsq/reference.c" in sumsq.judge.files
    assert sumsq.trusted and sumsq.judged_by == "compare"


async def test_the_c_examples_starter_passes_and_is_timed_against_the_reference(sumsq, tmp_path):
    test, timing = await _judged(sumsq, tmp_path, sumsq.starter["solution.c"], timed=True)
    assert test.ok and (test.verdict.passed, test.verdict.total) == (9, 9)
    assert timing.ok and len(timing.candidate_s) == len(timing.reference_s) == 3
    assert 0.3 < min(timing.candidate_s) / min(timing.reference_s) < 3


async def test_the_c_example_fails_a_float_accumulator(sumsq, tmp_path):
    test, _ = await _judged(sumsq, tmp_path, FLOAT_SUM)
    assert not test.ok and 1 <= test.verdict.passed < test.verdict.total  # n=0 still matches
    assert "case n=" in test.verdict.detail and "expected" in test.verdict.detail
