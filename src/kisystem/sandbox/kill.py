"""Finding and killing every process of a run: its process group, every process that
carries its token in the environment and, run by root, every process of its uid (which a
daemon cannot shed by leaving the session and scrubbing its environment)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from dataclasses import dataclass

from kisystem.sandbox.users import pids_of_uid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunIds:
    pgid: int
    token_needle: bytes
    uid: int | None  # the run's own uid, when kisystem is root


def stat_fields(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
    except (OSError, IndexError):
        return []


def alive(pid: int) -> bool:
    fields = stat_fields(str(pid))
    return bool(fields) and fields[0] not in ("Z", "X")


def _in_group(pid: str, pgid: int) -> bool:
    fields = stat_fields(pid)
    return len(fields) > 2 and fields[0] not in ("Z", "X") and fields[2] == str(pgid)


def _has_token(pid: str, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return needle in fh.read().split(b"\0")
    except OSError:
        return False


def run_pids(ids: RunIds) -> set[int]:
    """Live processes of this run, by group, token or uid."""
    me = os.getpid()
    found = {int(pid) for pid in filter(str.isdigit, os.listdir("/proc"))
             if int(pid) != me and (_in_group(pid, ids.pgid) or _has_token(pid, ids.token_needle))}
    if ids.uid is not None:
        found |= pids_of_uid(ids.uid)
    return found


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signal.SIGKILL)


def kill_once(ids: RunIds) -> set[int]:
    """SIGKILL every process of the run; returns the pids found."""
    # The uid's processes go first: then bwrap's init outlives the program long enough
    # to reap it, and its CPU time still reaches the wait4 of the direct child.
    first = pids_of_uid(ids.uid) if ids.uid is not None else set()
    for pid in first:
        _kill(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(ids.pgid, signal.SIGKILL)
    pids = run_pids(ids)
    for pid in pids:
        _kill(pid)
    return first | pids


async def kill_all(ids: RunIds, pending: set[int], *, budget_s: float = 1.5) -> None:
    """Kill again until every process of the run is gone (a zombie at most); this also
    catches processes forked while the previous scan ran."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_s
    while True:
        pending = {pid for pid in pending | kill_once(ids) if alive(pid)}
        if not pending:
            return
        if loop.time() > deadline:
            log.warning("sandboxed processes %s survived SIGKILL", sorted(pending))
            return
        await asyncio.sleep(0.01)
