"""Which tier a question or task needs: simple, medium, complex or expert (seed E, DESIGN decision 9).

The score is a sum of points, clamped to [0, 1]; deterministic, from the text alone (no model):

- length: the words of the prompt (and of a task's starter files): under 40 add 0, under 150
  0.05, under 400 0.10, more 0.15.
- code: the kinds of code found (a code fence, ``def``, ``class``, ``#include``, a typed C-like
  signature, doctest examples, three or more lines ending in ``;``, ``{`` or ``}``): 0.15 for
  the first kind, 0.05 for each further one, at most 0.25.
- reasoning: each kind of reasoning marker ("prove", "optimize", "step by step",
  "concurrency", "complexity O(", "derive", "analyze", "invariant", "trade-off", "design"):
  0.10 each, at most 0.30.
- domain terms: each kind of hard-domain term (CUDA/GPU, SIMD, lock-free/atomics, DSP,
  real-time, the memory hierarchy, assembly/intrinsics, numerical stability): 0.15 each, at
  most 0.45.
- hybrid complexity: the hybrid decision's complexity score c (kisystem.routing.complexity:
  0.5 plus the steps of its language and domain rules) minus its 0.5 baseline, so -0.5..+0.5.

Markers match without case at the start of a word ("sse" is no hit in "assess"); each kind counts
once, however often it occurs.  c is the ``complexity`` given (e.g. the hybrid decision's own
value), else computed: for a TaskSpec on its prompt and starter files with its language and
domain, exactly as the router does; for a bare prompt with the language its code looks like
(CUDA, C++, Python; none: no language rules) and ``domain`` when given.  A term that both a
domain-term kind and the hybrid rules weigh (SIMD in an Audio/DSP task) counts in both, on purpose:
both say the task is hard.

The tiers (half-open intervals of the score):

    simple  [0, 0.20)   medium  [0.20, 0.40)   complex  [0.40, 0.65)   expert  [0.65, 1]

So a one-line question is simple, a HumanEval-style function with a docstring medium, a CUDA
kernel to optimize complex, and a proof about a lock-free C++ structure with threads expert.
The CLI's ``--tier`` skips the classifier (:func:`parse_tier`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kisystem import domains
from kisystem.ensemble.members import Tier
from kisystem.errors import UsageError
from kisystem.routing.complexity import BASELINE, task_text
from kisystem.routing.complexity import complexity as rule_complexity

if TYPE_CHECKING:
    from kisystem.loop.taskspec import TaskSpec

THRESHOLDS: tuple[tuple[float, Tier], ...] = ((0.65, Tier.EXPERT), (0.40, Tier.COMPLEX), (0.20, Tier.MEDIUM))
LENGTH_POINTS: tuple[tuple[int, float], ...] = ((400, 0.15), (150, 0.10), (40, 0.05))  # (at least words, points)
CODE_FIRST, CODE_MORE, CODE_MAX = 0.15, 0.05, 0.25
REASONING_EACH, REASONING_MAX = 0.10, 0.30
DOMAIN_EACH, DOMAIN_MAX = 0.15, 0.45
C_LIKE_LINES = 3  # lines ending in ; { or } before a text counts as C-like code

CODE_MARKERS: dict[str, re.Pattern[str]] = {
    "code fence": re.compile(r"```"),
    "def": re.compile(r"^\s*(?:async\s+)?def\s+\w+\s*\(", re.MULTILINE),
    "class": re.compile(r"^\s*class\s+\w+", re.MULTILINE),
    "#include": re.compile(r"^\s*#\s*include\b", re.MULTILINE),
    "doctest": re.compile(r"^\s*>>> ", re.MULTILINE),
    "signature": re.compile(r"\b(?:void|int|float|double|char|bool|auto|size_t|u?int\d+_t|template|__global__|"
                            r"__device__)\b[^;\n()]*?\s[*&]?\w+\([^()\n]*\)"),  # a type, a name, (parameters)
}  # fmt: skip

REASONING_MARKERS: dict[str, tuple[str, ...]] = {
    "prove": ("prove", "proof"),
    "optimize": ("optimi",),
    "step by step": ("step by step", "step-by-step"),
    "concurrency": ("concurren", "thread-safe", "threadsafe", "race condition", "deadlock", "linearizab"),
    "complexity O(": ("complexity o(", "big-o", "big o", "time complexity", "space complexity"),
    "derive": ("derive", "derivation"),
    "analyze": ("analyz", "analys"),
    "invariant": ("invariant", "correctness"),
    "trade-off": ("trade-off", "tradeoff", "trade off"),
    "design": ("architect", "design a", "design the"),
}

DOMAIN_TERMS: dict[str, tuple[str, ...]] = {
    "CUDA/GPU": ("cuda", "__global__", "gpu", "warp", "cublas", "cudnn", "opencl"),
    "SIMD": ("simd", "avx", "sse", "neon", "vectoriz", "vectoris"),
    "lock-free": ("lock-free", "lockfree", "wait-free", "atomic", "memory_order", "memory order", "cas loop"),
    "DSP": ("dsp", "fft", "biquad", "convolution", "sample rate", "resampl", "audio"),
    "real-time": ("real-time", "realtime", "latency budget", "hard deadline"),
    "memory hierarchy": ("shared memory", "cache line", "cache-line", "false sharing", "coalesc", "tiling", "tiled"),
    "assembly": ("assembly", "intrinsic", "inline asm"),
    "numerics": ("numerical stability", "numerically stable", "floating-point error", "ill-conditioned"),
}

DOMAIN_LANGUAGES = {domains.CUDA: "cuda", domains.CPP: "cpp", domains.DSP: "cpp", domains.PYTHON: "python",
                    domains.TESTS_DOCS: "markdown"}  # fmt: skip


@dataclass(frozen=True)
class Classification:
    """The tier, the score it came from, and one reason per part that added (or took) points."""

    tier: Tier
    score: float
    reasons: tuple[str, ...]


def classify(prompt: str, *, domain: str | None = None, task: TaskSpec | None = None,
             complexity: float | None = None) -> Classification:  # fmt: skip
    """The tier of ``prompt`` (or of ``task``: its prompt and starter files, language and domain)."""
    text = task_text(task.prompt, tuple(task.starter.values())) if task is not None else prompt
    domain = domain if domain is not None else (task.domain if task is not None else None)
    parts = (_length(text), _code(text), _kinds("reasoning", text, REASONING_MARKERS, REASONING_EACH, REASONING_MAX),
             _kinds("domain terms", text, DOMAIN_TERMS, DOMAIN_EACH, DOMAIN_MAX),
             _hybrid(text, domain, task, complexity))  # fmt: skip
    score = min(1.0, max(0.0, round(sum(points for points, _ in parts), 6)))
    tier = tier_of(score)
    reasons = tuple(reason for points, reason in parts if points)
    return Classification(tier, score, (*reasons, f"score {score:.2f} -> {tier}"))


def tier_of(score: float) -> Tier:
    """The tier whose interval holds ``score`` (see the module docstring)."""
    return next((tier for bound, tier in THRESHOLDS if score >= bound), Tier.SIMPLE)


def parse_tier(text: str) -> Tier:
    """A tier named on the command line (``--tier``), any case; a one-line UsageError otherwise."""
    try:
        return Tier(text.strip().lower())
    except ValueError:
        allowed = ", ".join(t.value for t in Tier)
        raise UsageError(f"unknown tier {text!r} (allowed: {allowed})") from None


def _length(text: str) -> tuple[float, str]:
    words = len(text.split())
    points = next((p for least, p in LENGTH_POINTS if words >= least), 0.0)
    return points, f"length {words} words {points:+.2f}"


def _code(text: str) -> tuple[float, str]:
    kinds = [name for name, pattern in CODE_MARKERS.items() if pattern.search(text)]
    if sum(1 for line in text.splitlines() if line.rstrip().endswith((";", "{", "}"))) >= C_LIKE_LINES:
        kinds.append("C-like lines")
    points = min(CODE_MAX, CODE_FIRST + CODE_MORE * (len(kinds) - 1)) if kinds else 0.0
    return points, f"code: {', '.join(kinds)} {points:+.2f}"


def _kinds(part: str, text: str, table: dict[str, tuple[str, ...]], each: float, most: float) -> tuple[float, str]:
    lowered = text.lower()
    found = [name for name, words in table.items() if any(_has_word(lowered, w) for w in words)]
    points = min(most, each * len(found))
    return points, f"{part}: {', '.join(found)} {points:+.2f}"


def _has_word(lowered: str, keyword: str) -> bool:
    return re.search(rf"(?<![a-z0-9_]){re.escape(keyword)}", lowered) is not None


def _hybrid(text: str, domain: str | None, task: TaskSpec | None, given: float | None) -> tuple[float, str]:
    if given is not None:
        c, source = min(1.0, max(0.0, given)), "given"
    else:
        language = task.language if task is not None else _language_of(text, domain)
        c, source = rule_complexity(text, language, domain or ""), f"{language or 'no language'} rules"
    points = c - BASELINE
    return points, f"hybrid complexity {c:.2f} ({source}) {points:+.2f}"


def _language_of(text: str, domain: str | None) -> str:
    """The language a bare prompt's code looks like, else its domain's, else "" (no language rules)."""
    if "__global__" in text or "<<<" in text:
        return "cuda"
    if CODE_MARKERS["#include"].search(text) or "std::" in text:
        return "cpp"
    if CODE_MARKERS["def"].search(text) or re.search(r"```py(?:thon)?\b|^\s*import \w", text, re.MULTILINE):
        return "python"
    return DOMAIN_LANGUAGES.get(domain or "", "")
