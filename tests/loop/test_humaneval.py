import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from kisystem.errors import UsageError
from kisystem.cli.tasks_cmd import parse_range, tasks_group
from kisystem.loop.extract import complete_from_prefix
from kisystem.loop.humaneval import (
    COMPLETION_STOP, REFERENCE_FILE, TESTS_FILE, humaneval_spec, import_humaneval, read_humaneval,
)
from kisystem.loop.taskspec import CALLS_TEST_COMMAND, dump_task, load_task
from kisystem.sandbox.judge import judge_for
from kisystem.sandbox.judge.base import JudgeContext, Verdict
from kisystem.sandbox.process import Limits, detect_sandbox_level

PROBLEMS = read_humaneval()


@pytest.fixture
def root() -> Iterator[Path]:
    """Scratch space outside /tmp, where the sandbox's uid can reach it (see tests/sandbox/test_calls_judge.py)."""
    path = Path(tempfile.mkdtemp(prefix="kisystem-he-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def judge_solution(root: Path, problem: dict, solution: str) -> Verdict:
    """The calls judge's verdict on ``solution`` for ``problem``."""
    judge_dir, work = root / "judge", root / "work"
    judge_dir.mkdir()
    work.mkdir()
    ctx = JudgeContext(judge_dir, detect_sandbox_level(), Limits(cpu_s=30), seed=11)
    judge = judge_for(humaneval_spec(problem))
    await judge.prepare(ctx)
    (work / "solution.py").write_text(solution)
    return await judge.test(ctx, work, humaneval_spec(problem).test.timeout_s)


def canonical(problem: dict) -> str:
    return problem["prompt"] + problem["canonical_solution"]


def test_import_range_writes_loadable_specs(tmp_path):
    paths = import_humaneval(tmp_path, 30, 34)
    assert [p.name for p in paths] == [f"HumanEval_{i}.toml" for i in range(30, 34)]
    spec = load_task(paths[2])
    assert spec.id == "HumanEval_32" and spec.domain == "Python/General" and spec.language == "python"
    assert spec.solution_file == "solution.py"
    assert "`find_zero`" in spec.prompt and PROBLEMS[32]["prompt"] in spec.prompt and "```python" in spec.prompt
    assert (spec.test.command, spec.test.timeout_s) == (CALLS_TEST_COMMAND, 10.0)
    assert (spec.build.command, spec.build.timeout_s) == ("python -m py_compile solution.py", 30.0)
    assert spec.completion.prefix == PROBLEMS[32]["prompt"]
    assert spec.completion.stop == COMPLETION_STOP
    assert dict(spec.fixed) == {} and spec.trusted
    judge = spec.judge
    assert (judge.kind, judge.entry_point, judge.tests, judge.reference) == ("calls", "find_zero", TESTS_FILE,
                                                                             REFERENCE_FILE)
    assert judge.files[TESTS_FILE].index("def poly(") < judge.files[TESTS_FILE].index("def check(candidate)")
    assert judge.files[REFERENCE_FILE] == canonical(PROBLEMS[32])


def test_every_problem_round_trips_through_toml(tmp_path):
    for problem in PROBLEMS:
        spec = humaneval_spec(problem)
        path = tmp_path / f"{spec.id}.toml"
        path.write_text(dump_task(spec))
        assert load_task(path) == spec


def test_import_rejects_bad_range(tmp_path):
    with pytest.raises(UsageError):
        import_humaneval(tmp_path, 5, 5)


@pytest.mark.parametrize("index", [32, 38, 50, 53])
async def test_loop_based_checks_fail_wrong_solutions(root, index):
    problem = PROBLEMS[index]
    verdict = await judge_solution(root, problem, problem["prompt"] + "    return 0\n")
    assert verdict.passed < verdict.total and not verdict.ok
    assert verdict.detail.startswith("FAILED test")


async def test_loop_problem_counts_each_assert_statement(root):
    verdict = await judge_solution(root, PROBLEMS[53], canonical(PROBLEMS[53]))
    assert (verdict.passed, verdict.total) == (6, 6)


async def test_partial_solution_reports_counts_and_first_failure(root):
    verdict = await judge_solution(root, PROBLEMS[0], "def has_close_elements(numbers, threshold):\n    return False\n")
    assert (verdict.passed, verdict.total) == (3, 7)
    assert "FAILED test 1 of 7:" in verdict.detail
    assert "assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True" in verdict.detail
    assert "actual: False  expected: True" in verdict.detail


async def test_exception_in_solution_names_its_line(root):
    verdict = await judge_solution(root, PROBLEMS[0], "def has_close_elements(numbers, threshold):\n    return 1 / 0\n")
    assert "raised ZeroDivisionError: division by zero (solution.py line 2)" in verdict.detail
    assert (verdict.passed, verdict.total) == (0, 7)


@pytest.mark.parametrize("solution, message", [
    ("def has_close_elements(numbers, threshold):\n    return (\n", "SyntaxError"),
    ("def other():\n    pass\n", "defines no function has_close_elements()"),
    ("import sys\nsys.exit(0)\n", "SystemExit"),
])
async def test_unloadable_solution_fails_all(root, solution, message):
    verdict = await judge_solution(root, PROBLEMS[0], solution)
    assert message in verdict.detail and "cannot load has_close_elements from solution.py" in verdict.detail
    assert (verdict.passed, verdict.total) == (0, 7)


async def test_hanging_solution_times_out_within_the_test_timeout(root):
    verdict = await judge_solution(root, PROBLEMS[53], "def add(x, y):\n    while True:\n        pass\n")
    assert "timed out" in verdict.detail and (verdict.passed, verdict.total) == (0, 6)
    assert verdict.candidate.duration_s < 12


async def test_tests_use_reference_helpers_not_the_solutions(root):
    problem = PROBLEMS[38]
    solution = (canonical(problem) + "\n\ndef encode_cyclic(s):\n    return s\n")
    verdict = await judge_solution(root, problem, solution)
    assert verdict.passed == 0  # the solution's own helper breaks its decode, not the test


async def test_completion_mode_with_canonical_completion(root):
    problem = PROBLEMS[10]
    spec = humaneval_spec(problem)
    noisy = problem["canonical_solution"] + "\n\ndef test():\n    pass\n\nprint(make_palindrome('x'))\n"
    code = complete_from_prefix(spec.completion.prefix, noisy, spec.completion.stop)
    assert "def test" not in code and "print(" not in code
    verdict = await judge_solution(root, problem, code)
    assert verdict.ok, verdict.detail


def test_cli_import_and_check(tmp_path):
    runner = CliRunner()
    result = runner.invoke(tasks_group, ["import", "humaneval", "--out", str(tmp_path / "he"), "--range", "0:3"])
    assert result.exit_code == 0, result.output
    assert "wrote 3 task specs" in result.output
    assert sorted(p.name for p in (tmp_path / "he").iterdir()) == [f"HumanEval_{i}.toml" for i in range(3)]
    result = runner.invoke(tasks_group, ["check", str(tmp_path / "he")])
    assert result.exit_code == 0 and "3 valid, 0 invalid" in result.output


def test_cli_check_reports_each_bad_file(tmp_path):
    import_humaneval(tmp_path, 0, 1)
    (tmp_path / "bad1.toml").write_text('id = "x"\n')
    (tmp_path / "bad2.toml").write_text("= nope\n")
    result = CliRunner().invoke(tasks_group, ["check", str(tmp_path)])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 2
    assert "bad1.toml: missing required field 'domain'" in errors[0]
    assert "bad2.toml: invalid TOML" in errors[1]


@pytest.mark.parametrize("span, expected", [
    (None, (0, 164)), ("0:3", (0, 3)), ("160:", (160, 164)), (":2", (0, 2)), ("163:164", (163, 164)),
])
def test_parse_range(span, expected):
    assert parse_range(span, 164) == expected


@pytest.mark.parametrize("span", ["3", "5:5", "4:2", "0:165", "-1:3", "a:b", "1:x"])
def test_parse_range_rejects(span):
    with pytest.raises(UsageError, match="--range"):
        parse_range(span, 164)


def test_bad_range_through_main_is_one_line_exit_2(tmp_path, capsys):
    from kisystem.cli.main import cli, main

    cli.add_command(tasks_group)
    with pytest.raises(SystemExit) as info:
        main(["--home", str(tmp_path), "tasks", "import", "humaneval", "--out", str(tmp_path), "--range", "9:2"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --range '9:2': expected A:B with 0 <= A < B <= 164"]
