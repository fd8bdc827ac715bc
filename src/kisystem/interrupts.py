"""Why this process is being interrupted, for the runs it records as ``interrupted``.

The CLI's SIGTERM/SIGHUP handler notes the signal; a run cancelled without a note was
stopped by Ctrl-C or by its caller (a queue worker shutting down).
"""

from __future__ import annotations

_noted: str | None = None


def note(reason: str) -> None:
    global _noted
    _noted = reason


def reason(default: str) -> str:
    return _noted or default
