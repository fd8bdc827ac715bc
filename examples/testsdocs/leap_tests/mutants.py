"""The function under test (leap.py, a fixed file) and the wrong versions the tests must catch."""

from leap import is_leap  # the correct version, looked up by FUNCTION

MODULE = "leap"
FUNCTION = "is_leap"


def inverted(year):
    return not is_leap(year)


def every_fourth_year(year):  # forgets the century rule: 1900 is no leap year
    return year % 4 == 0


def no_400_rule(year):  # forgets that 2000 is a leap year
    return year % 4 == 0 and year % 100 != 0


def only_400_rule(year):  # forgets the ordinary leap years: 2024
    return year % 400 == 0


MUTANTS = {"inverted": inverted, "every_fourth_year": every_fourth_year, "no_400_rule": no_400_rule,
           "only_400_rule": only_400_rule}
