"""The calls judge's tests of the roman-cases task (judge-only, never in the candidate's view).

The candidate's cases() returns test cases for to_roman as data: a list of pairs
(n, expected).  check() holds one test for the table itself (well formed, between
MIN_CASES and MAX_CASES cases, each one right on the correct to_roman) and one per
hidden wrong version of to_roman, which some case must tell apart from the correct one.
"""

TABLE = [(1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"), (50, "L"),
         (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")]
MIN_CASES, MAX_CASES = 5, 50
SHOWN = 3  # problems listed at once


def greedy(table, n):
    out = ""
    for value, letters in table:
        while n >= value:
            out += letters
            n -= value
    return out


def to_roman(n):
    return greedy(TABLE, n)


MUTANTS = {
    "lowercase": lambda n: to_roman(n).lower(),
    "no_fours": lambda n: greedy([row for row in TABLE if row[0] not in (4, 40, 400)], n),  # 4 as IIII
    "no_nines": lambda n: greedy([row for row in TABLE if row[0] not in (9, 90, 900)], n),  # 9 as VIV
    "no_thousands": lambda n: greedy([row for row in TABLE if row[0] != 1000], n),  # 1000 as CMC
}


def problems(cases):
    """What is wrong with the table on the correct to_roman: a few short lines, [] if nothing."""
    if type(cases) not in (list, tuple):
        return [f"cases() must return a list of (n, expected) pairs, not a {type(cases).__name__}"]
    out = []
    if not MIN_CASES <= len(cases) <= MAX_CASES:
        out.append(f"{len(cases)} cases: write from {MIN_CASES} to {MAX_CASES}")
    for i, case in enumerate(cases):
        if type(case) not in (list, tuple) or len(case) != 2:
            out.append(f"case {i}: {case!r:.80} is not a pair (n, expected)")
            continue
        n, expected = case
        if type(n) is not int or not 1 <= n <= 3999:
            out.append(f"case {i}: n must be an int from 1 to 3999, not {n!r:.40}")
        elif expected != to_roman(n):
            out.append(f"case {i}: to_roman({n}) returns {to_roman(n)!r}, not {expected!r:.40}")
    return out[:SHOWN]


def catches(cases, mutant):
    """Whether the (valid) table tells the wrong version ``mutant`` from to_roman."""
    if problems(cases):
        return False
    wrong = MUTANTS[mutant]
    return any(wrong(n) != expected for n, expected in cases)


def check(candidate):
    assert problems(candidate()) == []
    assert catches(candidate(), "lowercase")  # a wrong version: lower-case letters
    assert catches(candidate(), "no_fours")  # a wrong version: no IV, XL, CD (4 as IIII)
    assert catches(candidate(), "no_nines")  # a wrong version: no IX, XC, CM (9 as VIV)
    assert catches(candidate(), "no_thousands")  # a wrong version: no M (1000 as CMC)
