"""The hidden reference answer of the roman-cases task (judge-only)."""


def cases():
    return [(1, "I"), (4, "IV"), (9, "IX"), (14, "XIV"), (40, "XL"), (90, "XC"), (400, "CD"),
            (900, "CM"), (1994, "MCMXCIV"), (3999, "MMMCMXCIX")]
