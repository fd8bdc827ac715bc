"""Running untrusted generated code, and judging it from outside.

``run_sandboxed`` runs one command in a sandbox (see :mod:`kisystem.sandbox.process`);
the judges (:mod:`kisystem.sandbox.judge`) decide a candidate's test results and timing
from what they observe outside the candidate's process, never from what it prints.
"""

from kisystem.sandbox.process import (
    Limits,
    ProcessResult,
    SandboxError,
    SandboxLevel,
    detect_sandbox_level,
    level_works,
    run_sandboxed,
)

__all__ = ["Limits", "ProcessResult", "SandboxError", "SandboxLevel", "detect_sandbox_level", "level_works",
           "run_sandboxed"]
