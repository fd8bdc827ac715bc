"""Child processes that die with kisystem, however it ends: the kernel's parent-death signal.

The signal fires when the *thread* that started the child exits, so children that must
outlive a call are started from the main thread (the event loop's), never from a worker
thread.
"""

from __future__ import annotations

import ctypes
import signal
import sys

PR_SET_PDEATHSIG = 1  # linux/prctl.h
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform.startswith("linux") else None


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Call in a child between fork and exec: the kernel sends it ``sig`` when its parent
    dies, even by SIGKILL (a no-op where Linux's prctl is missing)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, int(sig))
