import itertools

import pytest

from kisystem.loop.scoring import PerformanceParser, ScoreInput, TestCounts, parse_test_counts, score


@pytest.mark.parametrize("output, expected", [
    ("noise\nKISYSTEM_TESTS passed=3 total=7\n", TestCounts(3, 7)),
    ("KISYSTEM_TESTS passed=1 total=2\nKISYSTEM_TESTS passed=2 total=2\n", TestCounts(2, 2)),
    ("===================== 3 passed, 2 failed in 0.12s =====================", TestCounts(3, 5)),
    ("5 passed in 0.01s", TestCounts(5, 5)),
    ("..F\n1 failed, 2 passed, 1 skipped, 3 warnings in 1.05s", TestCounts(2, 3)),
    ("==== 4 passed, 1 error in 0.3s ====", TestCounts(4, 5)),
    ("==== 2 failed, 2 errors in 0.3s ====", TestCounts(0, 4)),
    ("==== 3 passed, 1 xfailed, 1 xpassed, 2 deselected in 2.00s (0:00:02) ====", TestCounts(4, 4)),
    ("== 7 passed in 0.50 seconds ==", TestCounts(7, 7)),
    ("\x1b[32m==== \x1b[32m\x1b[1m6 passed\x1b[0m\x1b[32m in 0.02s\x1b[0m\x1b[32m ====\x1b[0m", TestCounts(6, 6)),
    ("....\n----------------------------------------------------------------------\nRan 4 tests in 0.001s\n\nOK\n",
     TestCounts(4, 4)),
    ("Ran 6 tests in 0.010s\n\nFAILED (failures=1, errors=2)\n", TestCounts(3, 6)),
    ("Ran 5 tests in 0.010s\n\nOK (skipped=1, expected failures=1)\n", TestCounts(3, 3)),
    ("Ran 1 test in 0.000s\n\nFAILED (errors=1)\n", TestCounts(0, 1)),
    ("[==========] 5 tests from 2 test suites ran. (3 ms total)\n[  PASSED  ] 3 tests.\n[  FAILED  ] 2 tests",
     TestCounts(3, 5)),
])
def test_parse_formats(output, expected):
    assert parse_test_counts(output) == expected
    assert PerformanceParser().parse(output) == expected


@pytest.mark.parametrize("output", ["", "all good", "no tests ran in 0.01s", "I passed 3 exams", "Ran 0 tests in 0s\n\nOK"])
def test_parse_nothing(output):
    assert parse_test_counts(output) is None


def test_from_output_parses_counts():
    inp = ScoreInput.from_output(build_ok=True, test_ok=False, test_output="3 passed, 1 failed in 0.1s")
    assert (inp.tests_passed, inp.tests_total) == (3, 4)
    assert score(inp) == 75.0
    none = ScoreInput.from_output(build_ok=True, test_ok=True, test_output="")
    assert none.tests_passed is None and score(none) == 100.0


def test_build_failure_is_zero():
    assert score(ScoreInput(build_ok=False, test_ok=True, tests_passed=5, tests_total=5,
                            measured_time_s=1, reference_time_s=1)) == 0.0


def test_all_pass_without_reference_is_100():
    assert score(ScoreInput(True, True, 5, 5)) == 100.0
    assert score(ScoreInput(True, True, 5, 5, measured_time_s=3.0)) == 100.0


@pytest.mark.parametrize("passed, expected", [(0, 0.0), (1, 25.0), (3, 75.0)])
def test_partial_pass_is_proportional(passed, expected):
    assert score(ScoreInput(True, False, passed, 4)) == expected
    assert score(ScoreInput(True, False, passed, 4, measured_time_s=0.1, reference_time_s=1.0)) == expected * 0.8


@pytest.mark.parametrize("measured, expected", [(0.5, 100.0), (1.0, 100.0), (2.0, 90.0), (10.0, 82.0), (1e9, 80.0)])
def test_speed_part(measured, expected):
    assert score(ScoreInput(True, True, 3, 3, measured_time_s=measured, reference_time_s=1.0)) == expected


def test_failed_profile_earns_no_speed_points():
    assert score(ScoreInput(True, True, 3, 3, measured_time_s=None, reference_time_s=1.0)) == 80.0


def test_unknown_counts_use_exit_status():
    assert score(ScoreInput(True, True)) == 100.0
    assert score(ScoreInput(True, False)) == 0.0
    assert score(ScoreInput(True, True, measured_time_s=2.0, reference_time_s=1.0)) == 90.0


def test_nonzero_exit_with_all_counted_passing_is_not_full_marks():
    assert score(ScoreInput(True, False, 3, 3)) == 75.0


def test_bounded_and_monotonic():
    total = 8
    times = [0.01, 0.5, 1.0, 1.5, 3.0, 100.0]
    for test_ok, reference in itertools.product([True, False], [None, 1.0]):
        by_passed = [score(ScoreInput(True, test_ok or p == total, p, total, 1.0, reference)) for p in range(total + 1)]
        assert all(0.0 <= s <= 100.0 for s in by_passed)
        assert by_passed == sorted(by_passed)
    by_speed = [score(ScoreInput(True, True, total, total, t, 1.0)) for t in times]
    assert all(80.0 <= s <= 100.0 for s in by_speed)
    assert by_speed == sorted(by_speed, reverse=True)


def test_counts_out_of_range_are_clamped():
    assert score(ScoreInput(True, True, 9, 4)) == 100.0
    assert score(ScoreInput(True, False, -1, 4)) == 0.0
