"""The function the docstring documents and the wrong versions its examples must catch."""

MODULE = "vowels"
FUNCTION = "count_vowels"
MIN_EXAMPLES = 3


def count_vowels(text):
    return sum(1 for ch in text.lower() if ch in "aeiou")


def lowercase_only(text):  # "HELLO" gives 0
    return sum(1 for ch in text if ch in "aeiou")


def counts_y(text):  # "sky" gives 1
    return sum(1 for ch in text.lower() if ch in "aeiouy")


def skips_last_letter(text):  # "hello" gives 1
    return count_vowels(text[:-1])


MUTANTS = {"lowercase_only": lowercase_only, "counts_y": counts_y, "skips_last_letter": skips_last_letter}
