import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from click.testing import CliRunner

from kisystem.errors import UsageError
from kisystem.cli.tasks_cmd import parse_range, tasks_group
from kisystem.loop.extract import complete_from_prefix
from kisystem.loop.humaneval import (
    COMPLETION_STOP, TEST_FILE, humaneval_spec, import_humaneval, py_string, read_humaneval,
)
from kisystem.loop.scoring import parse_test_counts
from kisystem.loop.taskspec import dump_task, load_task

PROBLEMS = read_humaneval()


def run_harness(tmp_path: Path, problem: dict, solution: str) -> subprocess.CompletedProcess:
    work = tmp_path / problem["task_id"].replace("/", "_")
    work.mkdir()
    (work / TEST_FILE).write_text(humaneval_spec(problem).fixed[TEST_FILE])
    (work / "solution.py").write_text(solution)
    return subprocess.run([sys.executable, TEST_FILE], cwd=work, capture_output=True, text=True, timeout=60)


def canonical(problem: dict) -> str:
    return problem["prompt"] + problem["canonical_solution"]


def test_import_range_writes_loadable_specs(tmp_path):
    paths = import_humaneval(tmp_path, 30, 34)
    assert [p.name for p in paths] == [f"HumanEval_{i}.toml" for i in range(30, 34)]
    spec = load_task(paths[2])
    assert spec.id == "HumanEval_32" and spec.domain == "Python/General" and spec.language == "python"
    assert spec.solution_file == "solution.py"
    assert "`find_zero`" in spec.prompt and PROBLEMS[32]["prompt"] in spec.prompt and "```python" in spec.prompt
    assert (spec.test.command, spec.test.timeout_s) == ("python test_solution.py", 10.0)
    assert (spec.build.command, spec.build.timeout_s) == ("python -m py_compile solution.py", 30.0)
    assert spec.completion.prefix == PROBLEMS[32]["prompt"]
    assert spec.completion.stop == COMPLETION_STOP
    assert list(spec.fixed) == [TEST_FILE]


def test_every_problem_round_trips_through_toml(tmp_path):
    for problem in PROBLEMS:
        spec = humaneval_spec(problem)
        path = tmp_path / f"{spec.id}.toml"
        path.write_text(dump_task(spec))
        assert load_task(path) == spec


def test_import_rejects_bad_range(tmp_path):
    with pytest.raises(UsageError):
        import_humaneval(tmp_path, 5, 5)


def test_canonical_solutions_pass_for_all_problems(tmp_path):
    def one(problem):
        result = run_harness(tmp_path, problem, canonical(problem))
        return problem["task_id"], result.returncode, result.stdout

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, PROBLEMS))
    failures = [(task, out[-300:]) for task, code, out in results if code != 0]
    assert failures == []
    for task, _, out in results:
        counts = parse_test_counts(out)
        assert counts is not None and counts.passed == counts.total > 0, task


@pytest.mark.parametrize("index", [32, 38, 50, 53])
def test_loop_based_checks_fail_wrong_solutions(tmp_path, index):
    problem = PROBLEMS[index]
    wrong = problem["prompt"] + "    return 0\n"
    result = run_harness(tmp_path, problem, wrong)
    counts = parse_test_counts(result.stdout)
    assert result.returncode != 0
    assert counts.passed < counts.total
    assert "FAILED test" in result.stdout


def test_loop_problem_counts_each_assert_statement(tmp_path):
    result = run_harness(tmp_path, PROBLEMS[53], canonical(PROBLEMS[53]))
    assert "KISYSTEM_TESTS passed=6 total=6" in result.stdout


def test_partial_solution_reports_counts_and_first_failure(tmp_path):
    problem = PROBLEMS[0]
    result = run_harness(tmp_path, problem, "def has_close_elements(numbers, threshold):\n    return False\n")
    assert result.returncode == 1
    assert result.stdout.strip().endswith("KISYSTEM_TESTS passed=3 total=7")
    assert "FAILED test 1 of 7:" in result.stdout
    assert "assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True" in result.stdout
    assert "actual: False  expected: True" in result.stdout


def test_exception_in_solution_names_its_line(tmp_path):
    result = run_harness(tmp_path, PROBLEMS[0], "def has_close_elements(numbers, threshold):\n    return 1 / 0\n")
    assert "raised ZeroDivisionError: division by zero (solution.py line 2)" in result.stdout
    assert "passed=0 total=7" in result.stdout


@pytest.mark.parametrize("solution, message", [
    ("def has_close_elements(numbers, threshold):\n    return (\n", "SyntaxError"),
    ("def other():\n    pass\n", "defines no function has_close_elements()"),
    ("import sys\nsys.exit(0)\n", "SystemExit"),
])
def test_unloadable_solution_fails_all(tmp_path, solution, message):
    result = run_harness(tmp_path, PROBLEMS[0], solution)
    assert result.returncode == 1
    assert message in result.stdout and "KISYSTEM_TESTS passed=0 total=7" in result.stdout


def test_hanging_solution_times_out_within_the_test_timeout(tmp_path):
    result = run_harness(tmp_path, PROBLEMS[53], "def add(x, y):\n    while True:\n        pass\n")
    assert "timed out" in result.stdout and "passed=0 total=6" in result.stdout


def test_tests_use_reference_helpers_not_the_solutions(tmp_path):
    problem = PROBLEMS[38]
    solution = (canonical(problem) + "\n\ndef encode_cyclic(s):\n    return s\n")
    result = run_harness(tmp_path, problem, solution)
    assert "passed=0" in result.stdout  # the solution's own helper breaks its decode, not the test


def test_completion_mode_with_canonical_completion(tmp_path):
    problem = PROBLEMS[10]
    spec = humaneval_spec(problem)
    noisy = problem["canonical_solution"] + "\n\ndef test():\n    pass\n\nprint(make_palindrome('x'))\n"
    code = complete_from_prefix(spec.completion.prefix, noisy, spec.completion.stop)
    assert "def test" not in code and "print(" not in code
    result = run_harness(tmp_path, problem, code)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("text", ['a"""b', 'ends"', "back\\slash", "\x00ctl", "plain\n", "'''"])
def test_py_string_is_exact(text):
    assert eval(py_string(text)) == text


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
