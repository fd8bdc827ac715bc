"""The function under test (clamp.py, a fixed file) and the wrong versions the tests must catch."""

from clamp import clamp  # noqa: F401 - the correct version, looked up by FUNCTION

MODULE = "clamp"
FUNCTION = "clamp"


def no_lower_bound(x, lo, hi):
    if lo > hi:
        raise ValueError("lo must not be greater than hi")
    return min(x, hi)


def no_upper_bound(x, lo, hi):
    if lo > hi:
        raise ValueError("lo must not be greater than hi")
    return max(x, lo)


def no_error(x, lo, hi):  # accepts lo > hi
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


def swapped_bounds(x, lo, hi):  # returns the wrong bound outside the range
    if lo > hi:
        raise ValueError("lo must not be greater than hi")
    if x < lo:
        return hi
    if x > hi:
        return lo
    return x


MUTANTS = {"no_lower_bound": no_lower_bound, "no_upper_bound": no_upper_bound, "no_error": no_error,
           "swapped_bounds": swapped_bounds}
