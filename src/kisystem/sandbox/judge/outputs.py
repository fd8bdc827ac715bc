"""Case lines of the compare protocol, and their comparison with a reference's.

A line ``<keyword> <name> <tokens...>`` (keyword ``case`` or ``digest``) is one case;
every other line is ignored.  Tokens that both parse as numbers match within
``abs_tol + rel_tol * |reference|`` (NaN never matches); other tokens must be equal.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from kisystem.sandbox.judge.base import clip

TOKENS_SHOWN = 12  # of a differing case, around the first differing token


@dataclass(frozen=True)
class Case:
    name: str
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class Comparison:
    passed: int
    total: int
    first_failure: str  # "" when every case matched
    missing: int  # expected cases the program never printed


def parse_cases(text: str, keyword: str = "case") -> list[Case]:
    cases = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == keyword:
            cases.append(Case(parts[1], tuple(parts[2:])))
    return cases


def repeated_names(cases: list[Case]) -> str | None:
    """The first case name that occurs more than once, if any."""
    counts = Counter(case.name for case in cases)
    return next((name for name, count in counts.items() if count > 1), None)


def _number(token: str) -> float | None:
    try:
        return float(token)
    except ValueError:
        return None


def token_matches(expected: str, got: str, rel_tol: float, abs_tol: float) -> bool:
    if expected == got:
        return expected.lower() not in ("nan", "-nan", "+nan")
    want, have = _number(expected), _number(got)
    if want is None or have is None or math.isnan(want) or math.isnan(have):
        return False
    if math.isinf(want) or math.isinf(have):
        return want == have
    return abs(have - want) <= abs_tol + rel_tol * abs(want)


def first_difference(expected: Case, got: Case, rel_tol: float, abs_tol: float) -> int | None:
    """Index of the first token that differs (the shorter length if one is a prefix); None if equal."""
    for i, (want, have) in enumerate(zip(expected.tokens, got.tokens)):
        if not token_matches(want, have, rel_tol, abs_tol):
            return i
    if len(expected.tokens) != len(got.tokens):
        return min(len(expected.tokens), len(got.tokens))
    return None


def describe_difference(expected: Case, got: Case, index: int) -> str:
    start = max(0, index - 2)
    window = slice(start, start + TOKENS_SHOWN)

    def shown(case: Case) -> str:
        more = " ..." if len(case.tokens) > window.stop else ""
        return (("... " if start else "") + " ".join(case.tokens[window]) + more).strip() or "(nothing)"

    return clip(f"case {expected.name}: token {index} differs ({len(expected.tokens)} tokens expected, "
                f"{len(got.tokens)} printed): expected {shown(expected)} got {shown(got)}", 600)


def compare_cases(expected: list[Case], got: list[Case], rel_tol: float, abs_tol: float) -> Comparison:
    """Case by case: a case passes when printed exactly once with matching tokens."""
    counts = Counter(case.name for case in got)
    printed = {case.name: case for case in got}
    passed, missing, failure = 0, 0, ""
    for want in expected:
        problem = ""
        if counts[want.name] == 0:
            missing += 1
            problem = f"case {want.name}: missing"
        elif counts[want.name] > 1:
            problem = f"case {want.name}: printed {counts[want.name]} times"
        elif (index := first_difference(want, printed[want.name], rel_tol, abs_tol)) is not None:
            problem = describe_difference(want, printed[want.name], index)
        passed += not problem
        failure = failure or problem
    return Comparison(passed, len(expected), failure, missing)
