"""The hidden reference answer of the fizzbuzz-doctest task (judge-only)."""


def fizzbuzz(n):
    """Return the FizzBuzz word for n.

    >>> fizzbuzz(3)
    'Fizz'
    >>> fizzbuzz(10)
    'Buzz'
    >>> fizzbuzz(30)
    'FizzBuzz'
    >>> fizzbuzz(7)
    '7'
    """
    if n % 15 == 0:
        return "FizzBuzz"
    if n % 3 == 0:
        return "Fizz"
    if n % 5 == 0:
        return "Buzz"
    return str(n)
