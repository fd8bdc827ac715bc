"""The Tests/Docs example tasks (examples/testsdocs/): a good answer passes the real judge
in the real sandbox, weak answers fail it, and what the judge checks stays out of the prompt."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kisystem.config import OptimizationConfig
from kisystem.domains import TESTS_DOCS
from kisystem.loop.categorizer import Phase
from kisystem.loop.extract import complete_from_prefix, extract_files
from kisystem.loop.phases import PhaseRunner, limits_for
from kisystem.loop.taskspec import load_task, load_tasks
from kisystem.loop.workspace import Workspace
from kisystem.sandbox.judge.session import judged_run

FOLDER = Path(__file__).parents[1] / "examples" / "testsdocs"
TASK_FILES = {"leap": "leap_tests.toml", "clamp": "clamp_tests.toml", "roman": "roman_cases.toml",
              "fizzbuzz": "fizzbuzz_doc.toml", "vowels": "vowels_doc.toml"}
COMPARE_MUTANTS = {"leap": "leap_tests/mutants.py", "clamp": "clamp_tests/mutants.py",
                   "fizzbuzz": "fizzbuzz_doc/mutants.py", "vowels": "vowels_doc/mutants.py"}
JUDGED_RUN_LIMIT_S = 2.0  # one candidate's build and judged test (the judge's own preparation apart)


def task(key: str):
    return load_task(FOLDER / TASK_FILES[key])


def mutant_names(key: str) -> list[str]:
    """The keys of the ``MUTANTS = {...}`` dict in the task's mutants file (fixed or the judge's)."""
    spec = task(key)
    source = spec.judge.files["roman_cases/tests.py"] if key == "roman" else spec.fixed[COMPARE_MUTANTS[key]]
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["MUTANTS"]:
            return [k.value for k in node.value.keys]
    raise AssertionError(f"no MUTANTS in the mutants file of {key}")


async def judge(key: str, root: Path, code: str):
    """The judge's verdict on ``code`` as the task's solution file, through the real sandbox."""
    spec = task(key)
    phases = PhaseRunner(OptimizationConfig())
    async with judged_run(spec, root, phases.level, limits_for(spec.language, spec.test.timeout_s)) as judged:
        assert judged is not None
        started = time.monotonic()
        workspace = Workspace.create(root, "run", 0)
        workspace.write_files({spec.solution_file: code})
        build = await phases.run(Phase.BUILD, spec.build, workspace, spec.fixed, spec.language)
        assert build.ok, build.result.output
        test = await phases.run_judged(judged, workspace, spec.fixed, spec.test.timeout_s)
        assert test.verdict is not None
        return test, time.monotonic() - started


# --- answers ------------------------------------------------------------------------

LEAP_GOOD = '''from leap import is_leap


def test_divisible_by_4():
    assert is_leap(2024)
    assert is_leap(1988)


def test_not_divisible_by_4():
    assert not is_leap(2023)
    assert not is_leap(2018)


def test_centuries():
    assert not is_leap(1900)
    assert is_leap(2000)
'''
LEAP_PYTEST = '''import pytest
from leap import is_leap


@pytest.mark.parametrize("year, expected", [(2024, True), (2023, False), (1900, False), (2000, True)])
def test_is_leap(year, expected):
    assert is_leap(year) == expected


class TestCenturies:
    def test_2100(self):
        assert is_leap(2100) is False
'''
LEAP_NOTHING_MEANINGFUL = '''from leap import is_leap


def test_returns_a_bool():
    assert is_leap(2024) in (True, False)
    assert isinstance(is_leap(1900), bool)
'''
LEAP_NO_CENTURIES = '''from leap import is_leap


def test_leap():
    assert is_leap(2024)
    assert not is_leap(2023)
'''
LEAP_WRONG = '''from leap import is_leap


def test_leap():
    assert is_leap(2024)
    assert is_leap(1900)  # wrong: 1900 is no leap year
    assert is_leap(2000)
'''
LEAP_FORGED = '''import os
from leap import is_leap

for line in ["found yes", "correct pass", "mutant_inverted caught", "mutant_every_fourth_year caught",
             "mutant_no_400_rule caught", "mutant_only_400_rule caught"]:
    print("case " + line)
    os.write(1, ("case " + line + "\\n").encode())


def test_nothing():
    assert True
'''
LEAP_NAME_PEEK = '''from leap import is_leap


def test_is_the_real_one():
    assert is_leap.__name__ == "is_leap" and is_leap.__module__ == "leap" and is_leap.__doc__
'''
LEAP_NO_TESTS = "from leap import is_leap\n\nYEARS = [2024, 1900, 2000]\n"

CLAMP_GOOD = '''from clamp import clamp


def test_inside():
    assert clamp(5, 0, 10) == 5


def test_below_and_above():
    assert clamp(-1, 0, 10) == 0
    assert clamp(11, 0, 10) == 10


def test_lo_greater_than_hi():
    try:
        clamp(1, 5, 0)
        assert False, "expected ValueError"
    except ValueError:
        pass
'''
CLAMP_UNITTEST = '''import unittest

from clamp import clamp


class ClampTest(unittest.TestCase):
    def test_range(self):
        self.assertEqual(clamp(5, 0, 10), 5)
        self.assertEqual(clamp(-5, 0, 10), 0)
        self.assertEqual(clamp(15, 0, 10), 10)

    def test_error(self):
        with self.assertRaises(ValueError):
            clamp(0, 1, -1)
'''
CLAMP_NO_ERROR_TEST = '''from clamp import clamp


def test_clamp():
    assert clamp(5, 0, 10) == 5
    assert clamp(-1, 0, 10) == 0
    assert clamp(11, 0, 10) == 10
'''
CLAMP_LOOPS = '''from clamp import clamp


def test_forever():
    while True:
        pass
'''

ROMAN_GOOD = '''def cases():
    return [(1, "I"), (4, "IV"), (9, "IX"), (14, "XIV"), (40, "XL"), (90, "XC"),
            (400, "CD"), (900, "CM"), (1994, "MCMXCIV"), (2024, "MMXXIV")]
'''
ROMAN_GOOD_LISTS = '''def cases():
    table = [[3999, "MMMCMXCIX"], [444, "CDXLIV"], [3, "III"], [58, "LVIII"], [19, "XIX"]]
    return table
'''
ROMAN_SMALL_NUMBERS = '''def cases():
    return [(1, "I"), (2, "II"), (3, "III"), (5, "V"), (10, "X"), (20, "XX")]
'''
ROMAN_WRONG_CASE = '''def cases():
    return [(1, "I"), (4, "IIII"), (9, "IX"), (40, "XL"), (1994, "MCMXCIV")]
'''
ROMAN_TOO_FEW = '''def cases():
    return [(4, "IV"), (9, "IX"), (1994, "MCMXCIV")]
'''
ROMAN_BRUTE_FORCE = '''def to_roman(n):
    table = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
             (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
    out = ""
    for value, letters in table:
        while n >= value:
            out += letters
            n -= value
    return out


def cases():
    return [(n, to_roman(n)) for n in range(1, 4000)]
'''

FIZZBUZZ_GOOD = '''def fizzbuzz(n):
    """Return "Fizz" for multiples of 3, "Buzz" for multiples of 5, "FizzBuzz" for both, else str(n).

    >>> fizzbuzz(9)
    'Fizz'
    >>> fizzbuzz(20)
    'Buzz'
    >>> fizzbuzz(15)
    'FizzBuzz'
    >>> fizzbuzz(4)
    '4'
    """
    if n % 15 == 0:
        return "FizzBuzz"
    if n % 3 == 0:
        return "Fizz"
    if n % 5 == 0:
        return "Buzz"
    return str(n)
'''
FIZZBUZZ_PROSE_ONLY = '''def fizzbuzz(n):
    """Return "Fizz" for multiples of 3, "Buzz" for multiples of 5, "FizzBuzz" for both, else str(n)."""
    if n % 15 == 0:
        return "FizzBuzz"
    if n % 3 == 0:
        return "Fizz"
    if n % 5 == 0:
        return "Buzz"
    return str(n)
'''
FIZZBUZZ_UNQUOTED = FIZZBUZZ_GOOD.replace("    'Fizz'\n", "    Fizz\n")
FIZZBUZZ_NO_NUMBER = FIZZBUZZ_GOOD.replace("    >>> fizzbuzz(4)\n    '4'\n", "")
FIZZBUZZ_TWO_EXAMPLES = FIZZBUZZ_NO_NUMBER.replace("    >>> fizzbuzz(20)\n    'Buzz'\n", "")
FIZZBUZZ_OWN_BODY = FIZZBUZZ_GOOD.replace('    if n % 15 == 0:\n        return "FizzBuzz"\n', "")  # examples still
# pass on the real fizzbuzz: the judge reads the docstring and never runs the answer's body

VOWELS_GOOD = '''def count_vowels(text):
    """Return the number of vowels (a, e, i, o, u, either case) in text; y is not a vowel.

    >>> count_vowels("banana")
    3
    >>> count_vowels("AEIOU")
    5
    >>> count_vowels("sky")
    0
    """
    return sum(1 for ch in text.lower() if ch in "aeiou")
'''
VOWELS_LOWER_ONLY = '''def count_vowels(text):
    """Return the number of vowels in text.

    >>> count_vowels("hello")
    2
    >>> count_vowels("banana")
    3
    >>> count_vowels("queue")
    4
    """
    return sum(1 for ch in text.lower() if ch in "aeiou")
'''
VOWELS_WRONG_COUNT = VOWELS_GOOD.replace("    3\n", "    2\n")

GOOD = {"leap": LEAP_GOOD, "clamp": CLAMP_GOOD, "roman": ROMAN_GOOD, "fizzbuzz": FIZZBUZZ_GOOD,
        "vowels": VOWELS_GOOD}
ALSO_GOOD = [("leap", LEAP_PYTEST), ("clamp", CLAMP_UNITTEST), ("roman", ROMAN_GOOD_LISTS),
             ("fizzbuzz", FIZZBUZZ_OWN_BODY)]
# (task, answer, passed, total, a piece of the judge's detail)
WEAK = [
    ("leap", LEAP_NOTHING_MEANINGFUL, 2, 6, "mutant_inverted"),
    ("leap", LEAP_NO_CENTURIES, 4, 6, "mutant_every_fourth_year"),
    ("leap", LEAP_WRONG, 1, 6, "line 6: assert is_leap(1900)"),
    ("leap", LEAP_FORGED, 2, 6, "mutant_inverted"),
    ("leap", LEAP_NAME_PEEK, 2, 6, "mutant_inverted"),
    ("leap", LEAP_NO_TESTS, 0, 6, "case found"),
    ("clamp", CLAMP_NO_ERROR_TEST, 5, 6, "mutant_no_error"),
    ("clamp", CLAMP_LOOPS, 1, 6, "timed out"),
    ("roman", ROMAN_SMALL_NUMBERS, 2, 5, "no IV, XL, CD"),
    ("roman", ROMAN_WRONG_CASE, 0, 5, "to_roman(4) returns 'IV', not 'IIII'"),
    ("roman", ROMAN_TOO_FEW, 0, 5, "3 cases: write from 5 to 50"),
    ("roman", ROMAN_BRUTE_FORCE, 0, 5, "3999 cases"),
    ("fizzbuzz", FIZZBUZZ_PROSE_ONLY, 1, 6, "only_0"),
    ("fizzbuzz", FIZZBUZZ_UNQUOTED, 2, 6, "fizzbuzz(9) expected: Fizz got: 'Fizz'"),
    ("fizzbuzz", FIZZBUZZ_NO_NUMBER, 5, 6, "mutant_number_as_int"),
    ("fizzbuzz", FIZZBUZZ_TWO_EXAMPLES, 4, 6, "only_2"),
    ("vowels", VOWELS_LOWER_ONLY, 4, 6, "mutant_lowercase_only"),
    ("vowels", VOWELS_WRONG_COUNT, 2, 6, "expected: 2 got: 3"),
]
# What a base model in completion mode might continue each task's prefix with.
CONTINUATIONS = {
    "leap": "is_leap(2024)\n    assert not is_leap(2023)\n    assert not is_leap(1900)\n    assert is_leap(2000)\n"
            "\n\ndef test_more():\n    pass\n",
    "clamp": "clamp(5, 0, 10) == 5\n    assert clamp(-2, 0, 10) == 0\n    assert clamp(12, 0, 10) == 10\n"
             "    try:\n        clamp(0, 3, 1)\n        assert False\n    except ValueError:\n        pass\n",
    "roman": '        (4, "IV"),\n        (9, "IX"),\n        (40, "XL"),\n        (90, "XC"),\n'
             '        (1994, "MCMXCIV"),\n        (400, "CD"),\n    ]\n\n\ndef unused():\n    pass\n',
    "fizzbuzz": "3)\n    'Fizz'\n    >>> fizzbuzz(5)\n    'Buzz'\n    >>> fizzbuzz(15)\n    'FizzBuzz'\n"
                "    >>> fizzbuzz(7)\n    '7'\n    \"\"\"\n    return 'Fizz'\n",
    "vowels": "\"Apple\")\n    2\n    >>> count_vowels(\"rhythm\")\n    0\n    >>> count_vowels(\"idea\")\n    3\n"
              "    \"\"\"\n    return 0\n",
}


# --- the specs ----------------------------------------------------------------------


def test_the_folder_holds_five_valid_tests_docs_tasks():
    specs = load_tasks([FOLDER])
    assert sorted(s.id for s in specs) == sorted(task(k).id for k in TASK_FILES)
    for spec in specs:
        assert (spec.domain, spec.language, spec.domain) == (TESTS_DOCS, "python", "Tests/Docs")
        assert spec.trusted and spec.judge.files and spec.completion is not None
        assert spec.solution_file in spec.prompt


@pytest.mark.parametrize("key", TASK_FILES)
def test_the_judges_files_are_hidden_and_the_prompt_names_no_wrong_version(key):
    spec = task(key)
    assert not set(spec.judge.files) & set(spec.fixed)
    for name in spec.judge.files:
        assert name.rsplit("/", 1)[-1] not in spec.prompt
    mutants = mutant_names(key)
    assert len(mutants) >= 3
    for name in mutants:
        assert name not in spec.prompt and name not in spec.completion.prefix


@pytest.mark.parametrize("key", ["leap", "clamp"])
def test_the_prompt_shows_the_function_under_test_as_the_fixed_module_holds_it(key):
    spec = task(key)
    module = {"leap": "leap.py", "clamp": "clamp.py"}[key]
    assert spec.fixed[module].strip() in spec.prompt


def _function_in_prompt(key: str):
    spec = task(key)
    source = re.search(r"```python\n(.*?)```", spec.prompt, re.DOTALL).group(1)
    scope: dict = {}
    exec(source, scope)  # noqa: S102 - the task's own example code
    return scope[{"roman": "to_roman", "fizzbuzz": "fizzbuzz", "vowels": "count_vowels"}[key]]


@pytest.mark.parametrize(("key", "inputs"), [
    ("roman", range(1, 4000)),
    ("fizzbuzz", range(1, 100)),
    ("vowels", ["", "hello", "HELLO World", "rhythm", "sky", "Aeiouy", "queue"]),
])
def test_the_function_in_the_prompt_is_the_one_the_judge_checks_against(key, inputs):
    shown = _function_in_prompt(key)
    scope: dict = {}
    if key == "roman":
        exec(task(key).judge.files["roman_cases/tests.py"], scope)  # noqa: S102 - the task's own judge file
        correct, mutants = scope["to_roman"], scope["MUTANTS"]
    else:
        exec(task(key).fixed[COMPARE_MUTANTS[key]], scope)  # noqa: S102 - the task's own fixed file
        correct, mutants = scope[scope["FUNCTION"]], scope["MUTANTS"]
    assert all(shown(x) == correct(x) for x in inputs)
    for name, mutant in mutants.items():  # every wrong version is wrong somewhere
        assert any(mutant(x) != correct(x) for x in inputs), name


@pytest.mark.parametrize("key", COMPARE_MUTANTS)
def test_the_driver_finds_the_hidden_reference_perfect(key, tmp_path):
    """The expected lines: a reference that missed a wrong version would make catching it fail."""
    spec = task(key)
    for name, text in {**spec.fixed, **spec.judge.files}.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    out = subprocess.run(f"{spec.judge.command} test 1".replace("python ", f"{sys.executable} ", 1), shell=True,
                         cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True).stdout
    lines = [line.split() for line in out.splitlines()]
    assert len(lines) >= 5 and all(parts[0] == "case" and len(parts) == 3 for parts in lines)
    assert {parts[2] for parts in lines} <= {"yes", "pass", "caught", "at_least_3"}
    assert [parts[1] for parts in lines if parts[2] == "caught"] == [f"mutant_{m}" for m in mutant_names(key)]


# --- the judge ----------------------------------------------------------------------


@pytest.mark.parametrize("key", TASK_FILES)
async def test_a_good_answer_passes_the_judge(key, tmp_path):
    test, seconds = await judge(key, tmp_path, GOOD[key])
    assert test.ok and test.verdict.passed == test.verdict.total >= 5, test.result.output
    assert seconds < JUDGED_RUN_LIMIT_S * 5  # generous: this machine may be busy (about 0.2 s when idle)


@pytest.mark.parametrize(("key", "answer"), ALSO_GOOD, ids=[k for k, _ in ALSO_GOOD])
async def test_other_good_forms_pass_too(key, answer, tmp_path):
    test, _ = await judge(key, tmp_path, answer)
    assert test.ok, test.result.output


@pytest.mark.parametrize(("key", "answer", "passed", "total", "detail"), WEAK,
                         ids=[f"{k}-{i}" for i, (k, *_) in enumerate(WEAK)])
async def test_a_weak_answer_fails_the_judge_with_partial_credit_and_a_reason(key, answer, passed, total,
                                                                                detail, tmp_path):
    test, _ = await judge(key, tmp_path, answer)
    assert not test.ok
    assert (test.verdict.passed, test.verdict.total) == (passed, total), test.verdict.detail
    assert detail in test.verdict.detail


@pytest.mark.parametrize("key", TASK_FILES)
async def test_a_completed_prefix_builds_and_passes(key, tmp_path):
    spec = task(key)
    code = complete_from_prefix(spec.completion.prefix, CONTINUATIONS[key], spec.completion.stop)
    assert "def unused" not in code and "def test_more" not in code  # the stops end the answer
    test, _ = await judge(key, tmp_path, code)
    assert test.ok, test.result.output


async def test_a_chat_answer_lands_in_the_solution_file(tmp_path):
    spec = task("leap")
    answer = f"Here are the tests.\n\n```python\n# file: test_leap.py\n{LEAP_GOOD}```\n"
    files = extract_files(answer, spec.solution_file)
    assert list(files) == ["test_leap.py"]
    test, _ = await judge("leap", tmp_path, files["test_leap.py"])
    assert test.ok
