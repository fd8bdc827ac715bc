"""The PerformanceParser: phase results to a score from 0 to 100.

Scoring rule
------------

==========================================  ===============================================
Situation                                   Score
==========================================  ===============================================
build failed                                0
tests partly pass                           ``base * passed / total``
all tests pass, no performance reference    100
all tests pass, performance reference       ``80 + 20 * min(1, reference_s / measured_s)``
==========================================  ===============================================

``base`` (CORRECTNESS_BASE) is 80 when the task has a performance reference (a profile
phase with ``reference_time_s``, or a reference the loop measured) and 100 otherwise; the
last 20 points then reward speed.  Matching or beating the reference gives the full 20
(faster saturates at 100); half its speed gives 10 (score 90); much slower tends to 80.
A profile run that failed or measured nothing earns no speed points.  Speed counts only
when every test passes.

Measured against a reference in the same run
--------------------------------------------

A profile reports named metrics (:mod:`kisystem.loop.profiling`): the candidate's
``best_wall_s`` (fastest timed round: load only ever adds time), ``wall_s`` (median),
``kernel_time_s`` or ``instructions`` and, where the task's reference implementation ran
in the same process, the same figure as ``reference_best_wall_s`` and so on.
:meth:`ScoreInput.from_metrics` takes the first of :data:`PRIMARY_METRICS` measured for
both as measured and reference time, so load on the machine slows both alike.  Only
without such a pair does the task's static ``reference_time_s`` stand in.

Test counts come from the test output (:func:`parse_test_counts`): kisystem's own
``KISYSTEM_TESTS passed=P total=T`` line, a pytest summary, a unittest summary or a
GoogleTest summary.  Without counts the exit status decides: exit 0 means all passed,
anything else means none did.  A non-zero exit although every counted test passed (a
crash after the tests, a failing teardown) counts as one more failing test.
Scores are bounded to 0..100, rounded to two decimals, and monotonic in the number of
passed tests and in speed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

PERF_POINTS = 20.0
PRIMARY_METRICS = ("best_wall_s", "wall_s", "kernel_time_s", "instructions")  # first pair measured wins
TIME_METRICS = ("best_wall_s", "wall_s")
REFERENCE_PREFIX = "reference_"
BASE_WITH_REFERENCE = 100.0 - PERF_POINTS
BASE_WITHOUT_REFERENCE = 100.0

_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_KISYSTEM_RE = re.compile(r"KISYSTEM_TESTS passed=(\d+) total=(\d+)")
_PYTEST_LINE_RE = re.compile(r"^[=\s]*((?:\d+ [a-z]+,? ?)+) in [\d.]+ ?s(?:econds)?\b.*$", re.MULTILINE)
_PYTEST_ITEM_RE = re.compile(r"(\d+) (passed|failed|errors?|xpassed)\b")
_UNITTEST_RAN_RE = re.compile(r"^Ran (\d+) tests? in ", re.MULTILINE)
_UNITTEST_END_RE = re.compile(r"^(OK|FAILED)(?: \(([^)]*)\))?\s*$", re.MULTILINE)
_GTEST_RAN_RE = re.compile(r"^\[=+\] (\d+) tests? from .* ran\.", re.MULTILINE)
_GTEST_PASSED_RE = re.compile(r"^\[ +PASSED +\] (\d+) tests?\.", re.MULTILINE)


@dataclass(frozen=True)
class TestCounts:
    __test__ = False  # not a pytest test class

    passed: int
    total: int


@dataclass(frozen=True)
class ScoreInput:
    """What the phases reported; ``tests_passed``/``tests_total`` None means unknown."""

    build_ok: bool
    test_ok: bool
    tests_passed: int | None = None
    tests_total: int | None = None
    measured_time_s: float | None = None
    reference_time_s: float | None = None

    @classmethod
    def from_output(cls, *, build_ok: bool, test_ok: bool, test_output: str,
                    measured_time_s: float | None = None, reference_time_s: float | None = None) -> ScoreInput:
        """Like the constructor, with the test counts parsed from the test phase's output."""
        counts = parse_test_counts(test_output)
        return cls(build_ok, test_ok, counts and counts.passed, counts and counts.total,
                   measured_time_s, reference_time_s)

    @classmethod
    def from_metrics(cls, *, build_ok: bool, test_ok: bool, test_output: str, metrics: Mapping[str, float],
                     reference_time_s: float | None = None) -> ScoreInput:
        """Like :meth:`from_output`, with speed from a profile's metrics (see the module docstring);
        ``reference_time_s`` is the fallback for a reference that did not run alongside."""
        pair = speed_pair(metrics)
        measured = next((metrics[k] for k in TIME_METRICS if metrics.get(k)), None)
        measured, reference = pair[1:] if pair else (measured, reference_time_s)
        return cls.from_output(build_ok=build_ok, test_ok=test_ok, test_output=test_output,
                               measured_time_s=measured, reference_time_s=reference)


def speed_pair(metrics: Mapping[str, float]) -> tuple[str, float, float] | None:
    """(name, candidate, reference) of the first primary metric measured for both, if any."""
    for name in PRIMARY_METRICS:
        candidate, reference = metrics.get(name), metrics.get(REFERENCE_PREFIX + name)
        if candidate and reference and candidate > 0 and reference > 0:
            return name, candidate, reference
    return None


class PerformanceParser:
    """Maps phase results to 0..100 by the rule in this module's docstring."""

    def parse(self, output: str) -> TestCounts | None:
        return parse_test_counts(output)

    def parse_metrics(self, tool: str, output: str) -> dict[str, float]:
        """Named metrics from a full profiler's output (callgrind, perf, cprofile, nsys, ncu)."""
        from kisystem.loop.profiling import parse_tool_output  # profiling imports this module

        return dict(parse_tool_output(tool, output).metrics)

    def score(self, result: ScoreInput) -> float:
        if not result.build_ok:
            return 0.0
        has_reference = bool(result.reference_time_s and result.reference_time_s > 0)
        fraction = self.correctness(result)
        points = (BASE_WITH_REFERENCE if has_reference else BASE_WITHOUT_REFERENCE) * fraction
        if fraction == 1.0 and has_reference:
            points += PERF_POINTS * self.speed(result)
        return round(min(100.0, max(0.0, points)), 2)

    def correctness(self, result: ScoreInput) -> float:
        """Share of tests passed, 0..1."""
        passed, total = result.tests_passed, result.tests_total
        if passed is None or not total:
            return 1.0 if result.test_ok else 0.0
        passed = min(max(passed, 0), total)
        if passed == total and not result.test_ok:
            return total / (total + 1)
        return passed / total

    def speed(self, result: ScoreInput) -> float:
        """Reference time over measured time, clamped to 0..1; 0 without a measurement."""
        measured, reference = result.measured_time_s, result.reference_time_s
        if not measured or measured <= 0 or not reference or reference <= 0:
            return 0.0
        return min(1.0, reference / measured)


def score(result: ScoreInput) -> float:
    """The score of ``result`` by the default :class:`PerformanceParser`."""
    return PerformanceParser().score(result)


def parse_test_counts(output: str) -> TestCounts | None:
    """Passed and total tests from a test run's output, or None if no summary is found.

    Tried in order, the last match of each counting: ``KISYSTEM_TESTS passed=P total=T``;
    pytest (``3 passed, 2 failed in 0.1s``: failed and errors fail, skipped and xfailed
    do not count); unittest (``Ran N tests`` then ``OK`` or ``FAILED (failures=F, errors=E)``;
    skipped and expected failures do not count); GoogleTest (``[==========] N tests from
    ... ran.`` and ``[  PASSED  ] P tests.``).
    """
    output = _ANSI_RE.sub("", output)
    for parser in (_kisystem_counts, _pytest_counts, _unittest_counts, _gtest_counts):
        counts = parser(output)
        if counts is not None and counts.total > 0:
            return counts
    return None


def _kisystem_counts(output: str) -> TestCounts | None:
    found = _KISYSTEM_RE.findall(output)
    return TestCounts(int(found[-1][0]), int(found[-1][1])) if found else None


def _pytest_counts(output: str) -> TestCounts | None:
    lines = _PYTEST_LINE_RE.findall(output)
    if not lines:
        return None
    passed = failed = 0
    for number, kind in _PYTEST_ITEM_RE.findall(lines[-1]):
        if kind in ("passed", "xpassed"):
            passed += int(number)
        else:
            failed += int(number)
    return TestCounts(passed, passed + failed)


def _unittest_counts(output: str) -> TestCounts | None:
    ran, end = _UNITTEST_RAN_RE.findall(output), _UNITTEST_END_RE.findall(output)
    if not ran or not end:
        return None
    details = dict(_pairs(end[-1][1]))
    total = int(ran[-1]) - details.get("skipped", 0) - details.get("expected failures", 0)
    failed = details.get("failures", 0) + details.get("errors", 0) + details.get("unexpected successes", 0)
    return TestCounts(max(total - failed, 0), max(total, 0))


def _pairs(text: str) -> list[tuple[str, int]]:
    return [(k.strip(), int(v)) for k, v in re.findall(r"([a-z ]+)=(\d+)", text)]


def _gtest_counts(output: str) -> TestCounts | None:
    ran, passed = _GTEST_RAN_RE.findall(output), _GTEST_PASSED_RE.findall(output)
    if not ran:
        return None
    return TestCounts(int(passed[-1]) if passed else 0, int(ran[-1]))
