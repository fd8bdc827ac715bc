"""Complexity of a task from its text (the hybrid decision's 30 %, seed B §3).

The score starts at 0.5 (medium); every rule whose keywords occur in the task text (the
prompt plus the starter code) adds its step; the result is clamped to [0, 1].  A task
gets the rules of its language and of its domain.

The CUDA and C++ rules are the guide's, verbatim and case-sensitive.  The others are
kisystem's own, in the same three steps (simple +0.1, medium +0.2, complex +0.3),
matched without case and only at the start of a word ("sse" is no hit in "assess"),
because they mostly meet prose:

- Python: loops in a function are simple; classes, generators and decorators medium;
  concurrency and native code (asyncio, threads, processes, ctypes, numba, cython)
  complex.
- Audio/DSP (any language): gains, buffers and sample rates are simple; filters, FFTs
  and convolution medium; real-time, lock-free or SIMD work complex.
- Tests/Docs (and markdown): writing prose is easier than the baseline (-0.2); mocks,
  fixtures and parametrized tests are medium; property-based, concurrency or
  integration tests complex.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kisystem.domains import DSP, TESTS_DOCS

BASELINE = 0.5


@dataclass(frozen=True)
class Rule:
    """Adds ``step`` when every ``all_of`` keyword and, if given, any ``any_of`` keyword occurs."""

    step: float
    all_of: tuple[str, ...] = ()
    any_of: tuple[str, ...] = ()

    def matches(self, has: Callable[[str], bool]) -> bool:
        return all(map(has, self.all_of)) and (not self.any_of or any(map(has, self.any_of)))


@dataclass(frozen=True)
class RuleSet:
    """Rules over one text; ``words`` matches lower-case keywords at word starts instead of verbatim."""

    name: str
    rules: tuple[Rule, ...]
    words: bool = False

    def score(self, text: str) -> float:
        return sum(r.step for r in self.rules if r.matches(self._finder(text)))

    def _finder(self, text: str) -> Callable[[str], bool]:
        if not self.words:
            return text.__contains__
        lowered = text.lower()
        return lambda kw: re.search(rf"(?<![a-z0-9_]){re.escape(kw)}", lowered) is not None


CUDA_RULES = RuleSet("cuda", (
    Rule(0.1, all_of=("__global__", "<<<")),
    Rule(0.2, any_of=("__shared__", "blockIdx")),
    Rule(0.3, any_of=("cufft", "cublas", "cudnn")),
    Rule(0.2, all_of=("__syncthreads", "__shared__")),
))  # fmt: skip

CPP_RULES = RuleSet("c++", (
    Rule(0.1, all_of=("std::vector", "#include")),
    Rule(0.2, any_of=("template", "class")),
    Rule(0.3, any_of=("std::async", "std::thread")),
))  # fmt: skip

PYTHON_RULES = RuleSet("python", (
    Rule(0.1, all_of=("def ",), any_of=("for ", "while ")),
    Rule(0.2, any_of=("class ", "yield", "@dataclass", "@property", "decorator", "generator")),
    Rule(0.3, any_of=("asyncio", "async def", "threading", "multiprocessing", "concurrent.futures",
                      "ctypes", "numba", "cython")),
), words=True)  # fmt: skip

DSP_RULES = RuleSet("dsp", (
    Rule(0.1, any_of=("gain", "buffer", "sample rate", "samplerate", "sample_rate")),
    Rule(0.2, any_of=("filter", "biquad", "fft", "convol", "resampl", "window")),
    Rule(0.3, any_of=("real-time", "realtime", "lock-free", "lockfree", "simd", "avx", "sse", "neon")),
), words=True)  # fmt: skip

DOCS_RULES = RuleSet("docs", (
    Rule(-0.2, any_of=("docstring", "readme", "documentation", "document ", "tutorial", "changelog")),
    Rule(0.2, any_of=("mock", "fixture", "parametriz")),
    Rule(0.3, any_of=("hypothesis", "property-based", "concurren", "integration test", "race")),
), words=True)  # fmt: skip

LANGUAGE_RULES = {"cuda": CUDA_RULES, "cpp": CPP_RULES, "c": CPP_RULES, "c++": CPP_RULES,
                  "python": PYTHON_RULES, "markdown": DOCS_RULES}  # fmt: skip
DOMAIN_RULES = {DSP: DSP_RULES, TESTS_DOCS: DOCS_RULES}


def rule_sets(language: str, domain: str) -> tuple[RuleSet, ...]:
    """The rules of the language, then those of the domain (each set once)."""
    found = [LANGUAGE_RULES.get(language.lower()), DOMAIN_RULES.get(domain)]
    return tuple(dict.fromkeys(s for s in found if s is not None))


def complexity(text: str, language: str, domain: str = "") -> float:
    """0.5 plus the steps of every matching rule, clamped to [0, 1]."""
    return _clamp(BASELINE + sum(s.score(text) for s in rule_sets(language, domain)))


def task_text(prompt: str, starter: Sequence[str] = ()) -> str:
    return "\n".join((prompt, *starter))


def _clamp(x: float) -> float:
    return min(1.0, max(0.0, x))
