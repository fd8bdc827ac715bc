"""The function the docstring documents and the wrong versions its examples must catch."""

MODULE = "fizzbuzz"
FUNCTION = "fizzbuzz"
MIN_EXAMPLES = 3


def fizzbuzz(n):
    if n % 15 == 0:
        return "FizzBuzz"
    if n % 3 == 0:
        return "Fizz"
    if n % 5 == 0:
        return "Buzz"
    return str(n)


def fizz_first(n):  # 15 gives "Fizz"
    if n % 3 == 0:
        return "Fizz"
    if n % 5 == 0:
        return "Buzz"
    if n % 15 == 0:
        return "FizzBuzz"
    return str(n)


def swapped_words(n):  # 3 gives "Buzz", 5 gives "Fizz"
    return {"Fizz": "Buzz", "Buzz": "Fizz"}.get(fizzbuzz(n), fizzbuzz(n))


def number_as_int(n):  # 7 gives 7, not "7"
    word = fizzbuzz(n)
    return n if word == str(n) else word


MUTANTS = {"fizz_first": fizz_first, "swapped_words": swapped_words, "number_as_int": number_as_int}
