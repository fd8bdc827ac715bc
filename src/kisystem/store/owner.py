"""Which process writes a run, and whether it still lives.

A ``running`` row names its owner: host name, boot id, process id and the process's
start time.  A later kisystem process of the same host and boot can then tell at once
that the owner died without recording an end (SIGKILL, OOM killer, power cut of the
process), instead of waiting a day for the row to look stale.  The start time guards
against a recycled pid; the boot id against a reboot, after which every old owner is
gone.  Rows of another host cannot be judged from here.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
_STARTTIME_FIELD = 22  # proc(5): the process's start time in clock ticks after boot
_STATE_FIELD = 3


@dataclass(frozen=True)
class Owner:
    """The process that writes a run."""

    host: str
    boot: str | None  # None where the system has no boot id (not Linux)
    pid: int
    started: int | None  # clock ticks after boot; None where /proc cannot tell


def this_process() -> Owner:
    pid = os.getpid()
    return Owner(socket.gethostname(), boot_id(), pid, process_start(pid))


def boot_id() -> str | None:
    try:
        return BOOT_ID_FILE.read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks after boot; None if unknown or gone."""
    fields = _stat_fields(pid)
    return int(fields[_STARTTIME_FIELD - _STATE_FIELD]) if fields else None


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat from the third (state) on; None if it cannot be read."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text.rpartition(")")[2].split()  # the command name (field 2) may hold spaces and parentheses
    return fields if len(fields) > _STARTTIME_FIELD - _STATE_FIELD else None


def is_alive(pid: int, started: int | None) -> bool:
    """True while process ``pid`` exists, is not a zombie, and (where known) started at ``started``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    fields = _stat_fields(pid)
    if fields is None:
        return True  # no /proc to ask: a live pid is taken as the owner
    if fields[0] == "Z":
        return False  # exited, not yet reaped: it will never write again
    return started is None or int(fields[_STARTTIME_FIELD - _STATE_FIELD]) == started


def gone_because(owner: Owner, here: Owner) -> str | None:
    """Why ``owner`` can no longer end its runs, judged from process ``here``; None if alive or unknowable."""
    if owner.host != here.host:
        return None
    if owner.boot is not None and here.boot is not None and owner.boot != here.boot:
        return f"process {owner.pid} died without recording an end (the machine restarted)"
    if not is_alive(owner.pid, owner.started):
        return f"process {owner.pid} died without recording an end (killed?)"
    return None
