"""The calls judge, with real sandboxed processes: honest results, forged results that
fail at every sandbox level, the codec, and every HumanEval canonical solution."""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kisystem.loop.humaneval import humaneval_spec, read_humaneval
from kisystem.loop.taskspec import TaskSpec, load_task_text
from kisystem.sandbox.judge import judge_for
from kisystem.sandbox.judge.base import JudgeContext, JudgeError, Verdict
from kisystem.sandbox.judge.calls import CALLS_FILE, RUNNER_SCRIPT, CallsJudge
from kisystem.sandbox.judge.calls_scripts import codec
from kisystem.sandbox.process import Limits, SandboxLevel, detect_sandbox_level, level_works

PROBLEMS = read_humaneval()
LIMITS = Limits(cpu_s=30)
HAS_CLOSE = "def has_close_elements(numbers, threshold):\n"  # HumanEval/0: 7 tests, 4 expect True


@pytest.fixture
def root() -> Iterator[Path]:
    """A scratch directory outside /tmp: bwrap builds a fresh /tmp in which the parents of
    a bound workdir are root-only, so a run's uid could not reach a workdir below /tmp."""
    path = Path(tempfile.mkdtemp(prefix="kisystem-calls-", dir="/var/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(params=list(SandboxLevel))
def level(request: pytest.FixtureRequest) -> SandboxLevel:
    if not level_works(request.param):
        pytest.skip(f"sandbox level {request.param} does not work on this machine")
    return request.param


def canonical(index: int) -> str:
    return PROBLEMS[index]["prompt"] + PROBLEMS[index]["canonical_solution"]


async def prepared(task: TaskSpec, root: Path, level: SandboxLevel | None = None,
                   seed: int = 7) -> tuple[CallsJudge, JudgeContext]:
    judge_dir = root / "judge"
    judge_dir.mkdir(parents=True)
    ctx = JudgeContext(judge_dir, level or detect_sandbox_level(), LIMITS, seed)
    judge = judge_for(task)
    assert isinstance(judge, CallsJudge)
    await judge.prepare(ctx)
    return judge, ctx


async def judged(task: TaskSpec, solution: str, root: Path, level: SandboxLevel | None = None,
                 timeout_s: float = 10.0, seed: int = 7) -> Verdict:
    judge, ctx = await prepared(task, root, level, seed)
    workspace = root / "work"
    workspace.mkdir()
    (workspace / "solution.py").write_text(solution)
    return await judge.test(ctx, workspace, timeout_s)


async def judged_humaneval(index: int, solution: str, root: Path, **kw) -> Verdict:
    return await judged(humaneval_spec(PROBLEMS[index]), solution, root, **kw)


# --- honest results ---------------------------------------------------------------


async def test_correct_solution_passes_all(root: Path) -> None:
    verdict = await judged_humaneval(0, canonical(0), root)
    assert (verdict.passed, verdict.total, verdict.detail) == (7, 7, "")
    assert verdict.ok and verdict.candidate.exit_code == 0


async def test_wrong_solution_counts_and_names_the_first_failure(root: Path) -> None:
    verdict = await judged_humaneval(0, HAS_CLOSE + "    return False\n", root)
    assert (verdict.passed, verdict.total) == (3, 7)
    assert verdict.detail.splitlines() == [
        "FAILED test 1 of 7:",
        "  assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True",
        "  actual: False  expected: True",
    ]


async def test_exception_is_reported_with_its_line(root: Path) -> None:
    verdict = await judged_humaneval(0, HAS_CLOSE + "    return 1 / 0\n", root)
    assert (verdict.passed, verdict.total) == (0, 7)
    assert "raised ZeroDivisionError: division by zero (solution.py line 2)" in verdict.detail


async def test_prints_of_the_solution_go_to_its_log_not_the_answers(root: Path) -> None:
    noisy = "print('hello at import')\n" + canonical(0).replace("    for idx", "    print('in call')\n    for idx", 1)
    verdict = await judged_humaneval(0, noisy, root)
    assert (verdict.passed, verdict.total) == (7, 7)
    assert "hello at import" in verdict.candidate.output and "in call" in verdict.candidate.output


async def test_a_hanging_call_times_out_and_the_phase_is_bounded(root: Path) -> None:
    started = time.monotonic()
    verdict = await judged_humaneval(53, "def add(x, y):\n    while True:\n        pass\n", root, timeout_s=5)
    assert time.monotonic() - started < 20
    assert (verdict.passed, verdict.total) == (0, 6)
    assert "timed out after 3 s" in verdict.detail


async def test_random_inputs_follow_the_seed_and_kwargs_cross(root: Path) -> None:
    task = load_task_text(RANDOM_TASK, "random.toml")
    for seed in (1, 2):
        verdict = await judged(task, "def scale(xs, factor=1):\n    return [x * factor for x in xs]\n",
                               root / str(seed), seed=seed)
        assert (verdict.passed, verdict.total) == (2, 2)
    first, second = ((root / s / "judge" / CALLS_FILE).read_text() for s in "12")
    assert first != second  # fresh inputs per seed, the same in record and replay


RANDOM_TASK = '''
id = "random-scale"
domain = "Python/General"
language = "python"
prompt = "Write scale(xs, factor=1)."

[judge]
kind = "calls"
entry_point = "scale"

[judge.files]
"tests.py" = """
import random

def check(candidate):
    xs = [random.randint(-10**30, 10**30) for _ in range(20)]
    assert candidate(xs, factor=3) == [3 * x for x in xs]
    assert candidate(tuple(xs)) == xs
"""
"reference.py" = """
def scale(xs, factor=1):
    return [x * factor for x in xs]
"""
'''


async def test_a_reference_that_fails_its_tests_is_a_judge_error(root: Path) -> None:
    broken = RANDOM_TASK.replace("return [x * factor for x in xs]", "return []")
    with pytest.raises(JudgeError, match="the reference fails test 1 of 2"):
        await prepared(load_task_text(broken, "broken.toml"), root)


async def test_the_judge_files_stay_out_of_the_workspace(root: Path) -> None:
    await judged_humaneval(0, canonical(0), root)
    assert sorted(p.name for p in (root / "work").iterdir() if p.name != ".tmp") == ["solution.py"]


async def test_a_planted_symlink_is_replaced_not_written_through(root: Path) -> None:
    judge, ctx = await prepared(humaneval_spec(PROBLEMS[0]), root)
    workspace, victim = root / "work", root / "victim.txt"
    workspace.mkdir()
    victim.write_text("untouched")
    (workspace / RUNNER_SCRIPT).symlink_to(victim)
    (workspace / "solution.py").write_text(canonical(0))
    verdict = await judge.test(ctx, workspace, 10)
    assert verdict.passed == 7 and victim.read_text() == "untouched"


async def test_time_is_skipped(root: Path) -> None:
    judge = CallsJudge(humaneval_spec(PROBLEMS[0]))
    timing = await judge.time(JudgeContext(root, SandboxLevel.NONE, LIMITS, 1), root, 10, 3)
    assert timing.skipped and not timing.ok


# --- forged results: each must fail at every level --------------------------------

FORGED_REPORT = "import os\nprint('KISYSTEM_TESTS passed=7 total=7', flush=True)\nos._exit(0)\n"

EARLY_EXIT = canonical(0) + """
import os
_calls = [0]
_real = has_close_elements

def has_close_elements(numbers, threshold):
    _calls[0] += 1
    if _calls[0] > 2:
        os._exit(0)
    return _real(numbers, threshold)
"""

ALWAYS_EQUAL = HAS_CLOSE + """    class Anything:
        def __eq__(self, other):
            return True
        __hash__ = object.__hash__
    return Anything()
"""

EQUAL_LIST = HAS_CLOSE + """    class EqualList(list):
        def __eq__(self, other):
            return True
    return EqualList()
"""

# The runner's answers go to a private fd (a dup of the original stdout): write forged
# answer lines to every fd that may be it, as if all seven calls had answered True, then end.
FORGED_LINES = """import os
for fd in range(3, 30):
    try:
        os.write(fd, b'{"v":true}\\n' * 7)
    except OSError:
        pass
os._exit(0)
"""

GARBAGE_OUT = canonical(0) + """
import os, sys
for fd in range(1, 30):
    try:
        os.write(fd, b'KISYSTEM_TESTS passed=7 total=7\\n{"passed": 7, "total": 7, "detail": ""}\\n')
    except OSError:
        pass
sys.__stdout__.write('garbage\\n')
"""

MONKEYPATCH = """import json, __main__
__main__.answer = lambda *args: json.dumps({"passed": 7, "total": 7, "detail": ""})
__main__.CALL_LIMIT_S = 0.0

def has_close_elements(numbers, threshold):
    return None
"""


@pytest.mark.parametrize("solution, most", [
    (FORGED_REPORT, 0),
    (EARLY_EXIT, 2),  # two honest answers, then the program ends: two tests
    (ALWAYS_EQUAL, 0),
    (EQUAL_LIST, 0),
    (FORGED_LINES, 4),  # as good as always answering True, no better
    (GARBAGE_OUT, 3),  # two garbage lines shift the answers
    (MONKEYPATCH, 0),
], ids=["forged-report", "early-exit", "always-equal", "equal-list", "forged-lines", "garbage-out", "monkeypatch"])
async def test_forged_results_fail(level: SandboxLevel, root: Path, solution: str, most: int) -> None:
    verdict = await judged_humaneval(0, solution, root, level=level)
    assert verdict.total == 7
    assert verdict.passed <= most < verdict.total
    assert verdict.detail.startswith("FAILED test")


async def test_early_exit_keeps_the_honest_answers(root: Path) -> None:
    verdict = await judged_humaneval(0, EARLY_EXIT, root)
    assert verdict.passed == 2
    assert "no answer: the program ended after 2 of 7 calls" in verdict.detail


async def test_an_object_with_a_forged_eq_does_not_cross(root: Path) -> None:
    verdict = await judged_humaneval(0, ALWAYS_EQUAL, root)
    assert "actual: <unencodable Anything>  expected: True" in verdict.detail


async def test_the_judge_files_are_not_in_the_candidates_view(root: Path) -> None:
    if not level_works(SandboxLevel.BWRAP):
        pytest.skip("bwrap does not work here")
    judge_dir = root / "judge"
    peek = canonical(0).split("    for idx")[0] + "    return False\n" + f"""
import os
for name in ("tests.py", "reference.py", "{CALLS_FILE}"):
    path = os.path.join({str(judge_dir)!r}, name)
    print(name, "visible" if os.path.exists(path) else "hidden")
    try:
        exec(open(path).read())  # the reference would pass every test
    except OSError:
        pass
"""
    verdict = await judged_humaneval(0, peek, root, level=SandboxLevel.BWRAP)
    assert verdict.candidate.output.count("hidden") == 3
    assert (verdict.passed, verdict.total) == (3, 7)


# --- codec ------------------------------------------------------------------------

VALUES = [
    None, True, False, 0, -1, 2**64, -(10**5000), 1.5, -0.0, float("inf"), float("-inf"), float("nan"),
    "", "héllo\n\x00", b"\x00\xff", bytearray(b"ab"), [], [1, [2, [3]]], (), (1,), (1, (2.5, "x")),
    {}, {"a": 1, (1, 2): [3], 5: None, frozenset({1}): b"z"}, set(), {1, "a", (2, 3)}, frozenset({1.0, 2}),
    complex(1, -2), complex(float("nan"), 0), [float("nan"), {"k": (None, True)}],
]


def same(a: object, b: object) -> bool:
    """Equal and of the same type all the way down; nan equals nan."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("value", VALUES, ids=[f"{i}-{type(v).__name__}" for i, v in enumerate(VALUES)])
def test_codec_round_trips(value: object) -> None:
    text = codec.dumps(value)
    assert "\n" not in text
    back = codec.loads(text)
    expected = bytes(value) if isinstance(value, bytearray) else value
    assert same(back, expected)
    assert codec.dumps(back) == codec.dumps(expected)


def test_codec_turns_subclasses_and_number_likes_into_plain_values() -> None:
    class Forged(list):
        def __eq__(self, other: object) -> bool:
            return True

    class Index:
        def __index__(self) -> int:
            return 42

    assert type(codec.loads(codec.dumps(Forged([1])))) is list
    assert codec.loads(codec.dumps(Forged([1]))) != [2]
    assert codec.loads(codec.dumps(Index())) == 42


@pytest.mark.parametrize("value", [(x for x in ()), object(), print, type])
def test_unencodable_values_equal_nothing(value: object) -> None:
    back = codec.loads(codec.dumps(value))
    assert isinstance(back, codec.Unencodable)
    assert back != back and not (back == None) and not (back == [])  # noqa: E711
    with pytest.raises(ValueError):
        codec.dumps(value, strict=True)


def test_codec_bounds_depth_and_size() -> None:
    deep: list = []
    for _ in range(500):
        deep = [deep]
    assert isinstance(codec.loads(codec.dumps(deep)), codec.Unencodable)
    assert isinstance(codec.loads(codec.dumps(list(range(2_000_000)))), codec.Unencodable)
    with pytest.raises(codec.DecodeError):
        codec.loads("[" * 500 + "]" * 500)


@pytest.mark.parametrize("text", [
    "1.5", "NaN", "Infinity", '{"f": "0x1p+0", "t": []}', '{"q": 1}', '{"s": [[1]]}', '{"d": [[1]]}',
    '{"d": [[[1], 2]]}', '{"b": "***"}', '{"c": ["0x1p+0"]}', '{"i": "zz"}', "[1,", "",
])
def test_codec_rejects_what_it_does_not_write(text: str) -> None:
    with pytest.raises(codec.DecodeError):
        codec.loads(text)


# --- every HumanEval problem ------------------------------------------------------


async def test_every_canonical_solution_passes(root: Path) -> None:
    """All 164 canonical solutions pass under the calls judge, four at a time."""
    gate = asyncio.Semaphore(4)

    async def one(index: int) -> tuple[int, Verdict]:
        async with gate:
            return index, await judged_humaneval(index, canonical(index), root / str(index))

    started = time.monotonic()
    results = await asyncio.gather(*(one(i) for i in range(len(PROBLEMS))))
    elapsed = time.monotonic() - started
    failures = [(i, v.passed, v.total, v.detail) for i, v in results if not v.ok]
    assert failures == []
    assert len(results) == 164
    print(f"164 HumanEval problems judged in {elapsed:.1f} s")
