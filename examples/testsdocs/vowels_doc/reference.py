"""The hidden reference answer of the vowels-doctest task (judge-only)."""


def count_vowels(text):
    """Return how many vowels (a, e, i, o, u, either case) text holds; y is no vowel.

    >>> count_vowels("hello")
    2
    >>> count_vowels("HELLO World")
    3
    >>> count_vowels("rhythm")
    0
    >>> count_vowels("")
    0
    """
    return sum(1 for ch in text.lower() if ch in "aeiou")
