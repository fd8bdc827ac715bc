"""The health job's fixed smoke set: three tiny HumanEval-style problems, judged as HumanEval is.

Each is a HumanEval row (prompt, entry point, canonical solution, ``check``), made a task spec
by :func:`kisystem.loop.humaneval.humaneval_spec`, so the calls judge decides it outside the
candidate's process, in the sandbox, as the loop does.  Small and fixed on purpose: the
same problems every time make the results comparable across runs and models.
"""

from __future__ import annotations

from kisystem.loop.humaneval import humaneval_spec
from kisystem.loop.taskspec import TaskSpec

PROBLEMS: tuple[dict[str, str], ...] = (
    {
        "task_id": "smoke/add",
        "entry_point": "add",
        "prompt": 'def add(a: int, b: int) -> int:\n    """Return the sum of a and b.\n    >>> add(2, 3)\n    5\n'
                  '    """\n',
        "canonical_solution": "    return a + b\n",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-4, 4) == 0\n"
                "    assert candidate(10**12, 1) == 10**12 + 1\n",
    },
    {
        "task_id": "smoke/is_palindrome",
        "entry_point": "is_palindrome",
        "prompt": 'def is_palindrome(text: str) -> bool:\n'
                  '    """Whether text reads the same backwards, ignoring case.\n'
                  "    >>> is_palindrome('Anna')\n    True\n    >>> is_palindrome('abc')\n    False\n"
                  '    """\n',
        "canonical_solution": "    t = text.lower()\n    return t == t[::-1]\n",
        "test": "def check(candidate):\n    assert candidate('Anna') is True\n    assert candidate('abc') is False\n"
                "    assert candidate('') is True\n    assert candidate('Racecar') is True\n",
    },
    {
        "task_id": "smoke/count_vowels",
        "entry_point": "count_vowels",
        "prompt": 'def count_vowels(text: str) -> int:\n'
                  '    """The number of vowels (a, e, i, o, u; either case) in text.\n'
                  "    >>> count_vowels('Hello World')\n    3\n    \"\"\"\n",
        "canonical_solution": "    return sum(ch in 'aeiouAEIOU' for ch in text)\n",
        "test": "def check(candidate):\n    assert candidate('Hello World') == 3\n    assert candidate('xyz') == 0\n"
                "    assert candidate('AEIOU aeiou') == 10\n",
    },
)


def smoke_tasks(count: int = len(PROBLEMS)) -> list[TaskSpec]:
    """The first ``count`` problems of the smoke set as task specs."""
    return [humaneval_spec(problem) for problem in PROBLEMS[:count]]
