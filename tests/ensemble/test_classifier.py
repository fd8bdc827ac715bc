"""The complexity classifier: its points per part, the thresholds, the hybrid decision's complexity,
and ``--tier``'s parser."""

from __future__ import annotations

import pytest

from kisystem.domains import CPP, DSP
from kisystem.ensemble.classifier import Classification, classify, parse_tier, tier_of
from kisystem.ensemble.members import Tier
from kisystem.errors import UsageError
from kisystem.loop.taskspec import PhaseSpec, TaskSpec
from kisystem.routing.complexity import complexity, task_text

HUMANEVAL = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
    True
    """
'''

LOCK_FREE_PROOF = '''Prove step by step that this lock-free queue is linearizable, and give its complexity O(n).
```cpp
#include <atomic>
#include <thread>
#include <vector>
template <typename T> class Queue {
  std::atomic<Node*> head;
public:
  void push(T value) {
    Node* n = new Node{value};
  }
};
int main() { std::vector<std::thread> workers; }
```'''


def reason(result: Classification, prefix: str) -> str:
    [found] = [r for r in result.reasons if r.startswith(prefix)]
    return found


@pytest.mark.parametrize(("prompt", "tier", "score"), [
    ("What is the capital of France?", Tier.SIMPLE, 0.0),
    ("Write a Python function that reverses a string.", Tier.SIMPLE, 0.0),
    (HUMANEVAL, Tier.MEDIUM, 0.25),  # 46 words .05 + def and doctest .20
    ("Write a CUDA kernel for tiled matrix multiplication using shared memory and optimize it for occupancy.",
     Tier.COMPLEX, 0.40),  # optimize .10 + CUDA and the memory hierarchy .30
    (LOCK_FREE_PROOF, Tier.EXPERT, 1.0),
])  # fmt: skip
def test_the_documented_examples_get_their_tiers(prompt: str, tier: Tier, score: float) -> None:
    result = classify(prompt)
    assert (result.tier, result.score) == (tier, score)
    assert result.reasons[-1] == f"score {score:.2f} -> {tier}"
    assert classify(prompt) == result  # deterministic


def test_each_part_adds_its_documented_points() -> None:
    assert reason(classify(HUMANEVAL), "length") == "length 46 words +0.05"
    assert reason(classify(HUMANEVAL), "code") == "code: def, doctest +0.20"
    expert = classify(LOCK_FREE_PROOF)
    assert reason(expert, "code") == "code: code fence, #include, signature, C-like lines +0.25"  # capped
    assert reason(expert, "reasoning") == "reasoning: prove, step by step, concurrency, complexity O( +0.30"  # capped
    assert reason(expert, "domain terms") == "domain terms: lock-free +0.15"
    assert reason(expert, "hybrid") == "hybrid complexity 1.00 (cpp rules) +0.50"  # the guide's C++ rules


def test_length_points_step_up_with_the_words() -> None:
    points = [classify("word " * n).score for n in (39, 40, 149, 150, 399, 400, 5000)]
    assert points == [0.0, 0.05, 0.05, 0.10, 0.10, 0.15, 0.15]


def test_each_kind_of_marker_counts_once_and_domain_terms_are_capped() -> None:
    assert classify("optimize it, then optimise it again, optimizing").score == 0.10
    many = classify("CUDA SIMD lock-free DSP real-time assembly")
    assert many.score == 0.45 and many.tier is Tier.COMPLEX
    assert reason(many, "domain terms").startswith("domain terms: CUDA/GPU, SIMD, lock-free, DSP, real-time, assembly")


def test_markers_match_at_word_starts_only() -> None:
    assert classify("assess the message, then reprove nothing").score == 0.0  # no sse, no prove
    assert classify("use SSE").score == 0.15


def test_the_hybrid_decisions_complexity_when_given_replaces_the_rules() -> None:
    prompt = "Explain this function."
    assert classify(prompt).score == 0.0
    assert classify(prompt, complexity=0.9) == Classification(
        Tier.COMPLEX, 0.4, ("hybrid complexity 0.90 (given) +0.40", "score 0.40 -> complex"))
    assert classify(HUMANEVAL, complexity=0.1).score == 0.0  # below the baseline takes points away (clamped at 0)


def test_a_bare_prompt_gets_the_rules_of_the_language_its_code_looks_like() -> None:
    code = "def worker(q):\n    async def run():\n        await asyncio.sleep(1)\n    for x in q: pass\n"
    result = classify(code)
    assert reason(result, "hybrid") == "hybrid complexity 0.90 (python rules) +0.40"
    assert complexity(code, "python") == 0.9


def test_a_domain_brings_its_rules_and_its_language() -> None:
    prompt = "Apply a biquad filter to the buffer in real-time"
    assert "hybrid" not in " ".join(classify(prompt).reasons)
    with_domain = classify(prompt, domain=DSP)
    assert reason(with_domain, "hybrid") == "hybrid complexity 1.00 (cpp rules) +0.50"  # DSP rules: .1 + .2 + .3
    assert with_domain.score > classify(prompt).score


def test_a_task_is_classified_on_its_prompt_starter_language_and_domain_like_the_router_does() -> None:
    task = TaskSpec(id="t", domain=CPP, language="cpp", prompt="Fill the pool's buffer faster.",
                    solution_file="pool.cpp", test=PhaseSpec("make test", 60),
                    starter={"pool.cpp": "#include <thread>\nstd::thread t;\n"})  # fmt: skip
    result = classify("ignored when a task is given", task=task)
    c = complexity(task_text(task.prompt, tuple(task.starter.values())), "cpp", CPP)
    assert c == 0.8 and reason(result, "hybrid") == "hybrid complexity 0.80 (cpp rules) +0.30"
    assert reason(result, "code") == "code: #include +0.15" and result.score == 0.45
    in_dsp = classify("", task=task, domain=DSP)  # an explicit domain wins over the task's: DSP's "buffer" rule
    assert reason(in_dsp, "hybrid") == "hybrid complexity 0.90 (cpp rules) +0.40"


@pytest.mark.parametrize(("score", "tier"), [
    (0.0, Tier.SIMPLE), (0.199, Tier.SIMPLE), (0.2, Tier.MEDIUM), (0.399, Tier.MEDIUM), (0.4, Tier.COMPLEX),
    (0.649, Tier.COMPLEX), (0.65, Tier.EXPERT), (1.0, Tier.EXPERT),
])  # fmt: skip
def test_the_thresholds(score: float, tier: Tier) -> None:
    assert tier_of(score) is tier


def test_parse_tier_accepts_any_case_and_names_the_allowed_tiers_in_one_line() -> None:
    assert parse_tier(" Expert ") is Tier.EXPERT and parse_tier("simple") is Tier.SIMPLE
    with pytest.raises(UsageError) as caught:
        parse_tier("hard")
    assert str(caught.value) == "unknown tier 'hard' (allowed: simple, medium, complex, expert)"
