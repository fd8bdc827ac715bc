"""The hidden reference answer: tests that catch every mutant (judge-only)."""

from leap import is_leap


def test_ordinary_years():
    assert is_leap(2024)
    assert is_leap(1996)
    assert not is_leap(2023)
    assert not is_leap(2022)


def test_centuries():
    assert not is_leap(1900)
    assert not is_leap(2100)


def test_every_400_years():
    assert is_leap(2000)
    assert is_leap(1600)
