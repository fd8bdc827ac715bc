"""The consensus: clusters and figures, text medoid, normalised ASTs, examples from prompts, judged
scores, the quorum, and (one sandboxed test) agreement by behaviour."""

from __future__ import annotations

import asyncio

import pytest

from kisystem.ensemble.consensus import (
    NO_EXPECTATION,
    BehaviourRunner,
    Candidate,
    Method,
    agree,
    ast_key,
    by_ast,
    by_tests,
    by_text,
    clusters,
    derive_probe,
    pairwise_share,
    python_code,
    quorum,
    similarity,
)
from kisystem.ensemble.members import Member, MemberAnswer
from kisystem.models.base import Generation


def answer(text: str, model: str = "m", sample: int = 0, seconds: float = 1.0) -> MemberAnswer:
    return MemberAnswer(Member(model, sample), Generation(text=text, model=model), seconds)


def failed(model: str = "m", sample: int = 0) -> MemberAnswer:
    return MemberAnswer(Member(model, sample), None, 30.0, error="timeout after 30 s", dropped=True)


def fenced(code: str) -> str:
    return f"Here you go:\n```python\n{code}```\n"


def test_clusters_group_equal_keys_largest_first_and_none_alone() -> None:
    assert clusters(["a", "b", "a", None, None, "b", "a"]) == [[0, 2, 6], [1, 5], [3], [4]]
    assert pairwise_share([3, 2, 1, 1], 7) == pytest.approx((3 + 1) / 21)
    assert pairwise_share([1], 1) == 0.0


def test_text_medoid_is_the_answer_most_like_the_others() -> None:
    texts = ["the capital of france is paris", "paris is the capital of france", "paris",
             "i think it is lyon in france"]
    result = by_text([Candidate(answer(t, sample=i)) for i, t in enumerate(texts)])
    assert result.method is Method.TEXT
    assert result.text == "the capital of france is paris"
    assert similarity(texts[0], texts[1]) == 1.0
    # the two identical word sets agree; "paris" (1/6) and the lyon answer (3/9) are below 0.5
    assert result.confidence == pytest.approx(2 / 4)
    assert result.agreement == pytest.approx(1 / 6)
    assert [c.answer.text for c in result.agreeing] == texts[:2]


def test_ast_key_ignores_names_docstrings_and_annotations_but_not_logic() -> None:
    one = 'def add(a: int, b: int) -> int:\n    """Sum."""\n    total = a + b\n    return total\n'
    two = "def add(x, y):\n    s = x + y\n    return s\n"
    three = "def add(x, y):\n    return x - y\n"
    assert ast_key(one, ["add"]) == ast_key(two, ["add"])
    assert ast_key(two, ["add"]) != ast_key(three, ["add"])
    assert ast_key("def broken(:\n") is None


def test_ast_consensus_picks_the_largest_cluster_and_reports_its_share() -> None:
    codes = ["def f(a):\n    return a * 2\n", "def f(n):\n    return n * 2\n", "def f(a):\n    return a + a + 1\n"]
    result = by_ast([Candidate(answer(fenced(c), sample=i), c) for i, c in enumerate(codes)], ["f"])
    assert result.method is Method.AST
    assert result.code == codes[0]
    assert result.clusters == (2, 1)
    assert result.confidence == pytest.approx(2 / 3)
    assert result.agreement == pytest.approx(1 / 3)


def test_ast_consensus_without_two_alike_takes_the_medoid() -> None:
    codes = ["def f(a):\n    return sorted(a)[0]\n", "def f(a):\n    return sorted(a)[-1]\n",
             "def f(a):\n    x = 0\n    for v in a:\n        x = max(x, v)\n    return x\n"]
    result = by_ast([Candidate(answer(fenced(c), sample=i), c) for i, c in enumerate(codes)], ["f"])
    assert result.code == codes[0]  # most like both others (ties go to the earlier answer)
    assert result.confidence == pytest.approx(1 / 3)
    assert result.agreement == 0.0
    assert "medoid" in result.detail


def test_python_code_needs_a_definition() -> None:
    assert python_code(fenced("def f():\n    return 1\n")) == "def f():\n    return 1\n"
    assert python_code("42") == ""
    assert python_code("The answer is Paris.") == ""


PROMPT = '''
def add_one(xs: list, k: int = 1):
    """Add k to every element.
    >>> add_one([1, 2])
    [2, 3]
    >>> add_one([], k=3)
    []
    >>> round(add_one([1.5])[0], 1)
    2.5
    Example: add_one([0]) -> [1]
    Also add_one([5], 2) == [7].  add_one(xs) needs a list; print(add_one([9])).
    """
'''


def test_probe_from_doctests_and_examples() -> None:
    probe = derive_probe(PROMPT)
    assert probe is not None and probe.entry == "add_one"
    assert probe.calls == ((([1, 2],), {}), (([],), {"k": 3}), (([1.5],), {}), (([0],), {}), (([5], 2), {}),
                           (([9],), {}))
    assert probe.expected[:2] == ([2, 3], [])
    assert probe.expected[2] is NO_EXPECTATION  # inside round(): no stated result for the call itself
    assert probe.expected[3:5] == ([1], [7])
    assert probe.expected[5] is NO_EXPECTATION


def test_probe_from_input_output_and_for_sentences_keeps_positions() -> None:
    prompt = '''def top(arr, k):
    """
    Example 1:
        Input: arr = [3, 1, 2], k = 2
        Output: [3, 2]
    For arr = [5], k = 1 the output should be [5].
    """
'''
    probe = derive_probe(prompt)
    assert probe is not None and probe.entry == "top"
    assert probe.calls == ((([3, 1, 2], 2), {}), (([5], 1), {}))
    assert probe.expected == ([3, 2], [5])


def test_no_probe_without_literal_calls() -> None:
    assert derive_probe("Write a function that sorts a list. Call it as f(xs).") is None
    assert derive_probe(PROMPT, names={"something_else"}) is None


def judged(text: str, score: float, passed: bool, sample: int) -> Candidate:
    code = python_code(text)
    return Candidate(answer(text, sample=sample), code, score, passed)


def test_tests_consensus_takes_the_best_score_then_the_larger_cluster() -> None:
    a = judged(fenced("def f(x):\n    return x\n"), 40.0, False, 0)
    b = judged(fenced("def f(y):\n    return y\n"), 40.0, False, 1)  # agrees with a by its tree
    c = judged(fenced("def f(x):\n    return -x\n"), 40.0, False, 2)
    d = judged(fenced("def f(x):\n    return 0\n"), 10.0, False, 3)
    tie = by_tests([c, a, b, d])
    assert tie.method is Method.TESTS
    assert tie.chosen is a  # score 40 like c, but in a cluster of two
    assert tie.confidence == pytest.approx(2 / 4)
    best = by_tests([d, judged(fenced("def f(x):\n    return x + 1\n"), 100.0, True, 4), a])
    assert best.chosen.score == 100.0 and best.chosen.passed
    assert "passes every test" in best.detail


def test_all_passing_candidates_form_one_cluster() -> None:
    p1 = judged(fenced("def f(x):\n    return x * 2\n"), 100.0, True, 0)
    p2 = judged(fenced("def f(x):\n    return x + x\n"), 100.0, True, 1)
    wrong = judged(fenced("def f(x):\n    return x\n"), 50.0, False, 2)
    result = by_tests([wrong, p1, p2])
    assert result.chosen is p1
    assert result.clusters == (2, 1)
    assert result.agreement == pytest.approx(1 / 3)


def test_quorum_settles_once_a_share_of_the_planned_members_agree() -> None:
    settled = quorum(0.5, 6)  # three of six
    code = fenced("def f(a):\n    return a\n")
    same_code = fenced("def f(b):\n    '''Doc.'''\n    return b\n")
    assert not settled([answer("Paris."), answer("paris", sample=1), failed()])
    assert settled([answer("Paris."), answer("paris", sample=1), answer("  PARIS ", sample=2)])
    assert not settled([answer(code), answer(same_code, sample=1), answer("Paris", sample=2)])
    assert settled([answer(code), answer(same_code, sample=1), answer(code, sample=2)])
    assert not quorum(1.0, 1)([answer("x")])  # one member cannot agree with anyone
    with pytest.raises(ValueError):
        quorum(0.0, 3)


def test_agree_uses_text_for_prose_and_the_ast_for_code_without_a_runner() -> None:
    prose = asyncio.run(agree("What is the capital of France?", [answer("Paris"), answer("Paris", sample=1),
                                                                 failed(sample=2)]))
    assert prose.method is Method.TEXT and prose.text == "Paris" and prose.considered == 2
    code = asyncio.run(agree("Write f.", [answer(fenced("def f(a):\n    return a\n")),
                                          answer(fenced("def f(b):\n    return b\n"), sample=1),
                                          answer("no idea", sample=2)]))
    assert code.method is Method.AST and code.confidence == 1.0 and code.considered == 2
    none = asyncio.run(agree("q", [failed()]))
    assert none.method is Method.NONE and none.chosen is None and none.confidence == 0.0


BEHAVIOUR_PROMPT = '''Write is_even(n).
>>> is_even(2)
True
>>> is_even(7)
False
>>> is_even(0)
True
'''


def test_behaviour_clusters_by_answers_in_the_sandbox(tmp_path) -> None:
    """Two correct candidates written differently agree by behaviour (not by their trees); the wrong
    one and the one that does not load stay apart; candidate code runs only in the sandbox."""
    right_a = "def is_even(n):\n    return n % 2 == 0\n"
    right_b = "def is_even(n):\n    if n & 1:\n        return False\n    return True\n"
    wrong = "def is_even(n):\n    return n > 1\n"
    broken = "import no_such_module_here\ndef is_even(n):\n    return True\n"
    answers = [answer(fenced(c), sample=i) for i, c in enumerate((wrong, right_a, broken, right_b))]
    result = asyncio.run(agree(BEHAVIOUR_PROMPT, answers, BehaviourRunner(tmp_path / "probes")))
    assert result.method is Method.BEHAVIOUR
    assert result.code == right_a
    assert {c.code for c in result.agreeing} == {right_a, right_b}
    assert result.confidence == pytest.approx(2 / 4)
    assert result.agreement == pytest.approx(1 / 6)
    assert "3 of 3 stated results matched" in result.detail
    assert not list((tmp_path / "probes").iterdir())  # every probe directory removed
