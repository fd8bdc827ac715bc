"""Who holds a job's lease, and whether that holder can still finish it.

A holder id names its process: host, process id, the process's start time (so a recycled
pid is not taken for the old process, see :mod:`kisystem.store.owner`) and a random token
(two schedulers of one process hold apart).  A scheduler meeting a lease whose holder is a
dead process of this host takes it over at once instead of waiting for the lease to expire:
that is what lets a restarted daemon resume a SIGKILLed one's job without delay.
"""

from __future__ import annotations

import os
import socket
import uuid

from kisystem.store import owner

_UNKNOWN = "-"


def new_holder() -> str:
    """A lease holder id for this process: ``host:pid:start:token``."""
    pid = os.getpid()
    started = owner.process_start(pid)
    return f"{socket.gethostname()}:{pid}:{_UNKNOWN if started is None else started}:{uuid.uuid4().hex[:8]}"


def holder_gone(holder: str) -> str | None:
    """Why ``holder`` can never finish its job (its process is gone); None while it may (or cannot be judged)."""
    parts = holder.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname() or not parts[1].isdigit():
        return None  # another host's, or not ours to judge: only its lease's expiry counts
    pid, started = int(parts[1]), parts[2]
    if owner.is_alive(pid, int(started) if started.isdigit() else None):
        return None
    return f"its process {pid} is gone"
