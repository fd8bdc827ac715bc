"""Running untrusted generated code, and judging it from outside.

``run_sandboxed`` runs one command in a sandbox (see :mod:`kisystem.sandbox.process`);
``LEVEL_LIMITS`` / ``describe_level`` say what each sandbox level does and does not protect.
The judges (:mod:`kisystem.sandbox.judge`) decide a candidate's test results and timing
from what they observe outside the candidate's process, never from what it prints.
"""

from kisystem.sandbox.levels import LEVEL_LIMITS, SandboxLevel, describe_level, level_rank
from kisystem.sandbox.process import (
    Limits,
    ProcessResult,
    SandboxError,
    detect_sandbox_level,
    level_works,
    run_sandboxed,
)

__all__ = ["LEVEL_LIMITS", "Limits", "ProcessResult", "SandboxError", "SandboxLevel", "describe_level",
           "detect_sandbox_level", "level_rank", "level_works", "run_sandboxed"]
