"""The task domains kisystem knows out of the box.

The first five are the seeds' routing domains; ``Python/General`` is kisystem's own
addition for plain Python tasks such as HumanEval.  Inventories may add more.
"""

from __future__ import annotations

CUDA = "CUDA/Kernel"
CPP = "C++/System"
DSP = "Audio/DSP"
TESTS_DOCS = "Tests/Docs"
PLANNING = "Planning/Refactor"
PYTHON = "Python/General"

DEFAULT_DOMAINS: tuple[str, ...] = (CUDA, CPP, DSP, TESTS_DOCS, PLANNING, PYTHON)
