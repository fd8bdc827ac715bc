"""The hidden reference answer: tests that catch every mutant (judge-only)."""

from clamp import clamp


def test_inside():
    assert clamp(5, 0, 10) == 5
    assert clamp(0, 0, 10) == 0
    assert clamp(10, 0, 10) == 10


def test_outside():
    assert clamp(-3, 0, 10) == 0
    assert clamp(42, 0, 10) == 10


def test_empty_range_raises():
    try:
        clamp(1, 5, 0)
    except ValueError:
        return
    raise AssertionError("no ValueError for lo > hi")
