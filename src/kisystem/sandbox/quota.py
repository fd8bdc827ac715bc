"""The workdir's total disk quota: a watchdog that measures it while the program runs.

The workdir persists between phases, so it cannot be a size-limited tmpfs; instead its
allocated size (st_blocks * 512 of every file, hard links once, symlinks not followed)
is measured every ``POLL_S`` and the run is killed once it exceeds the quota.  It is a
watchdog, not a hard limit: between two measurements (POLL_S plus the time one walk
takes, which grows with the number of files) the program keeps writing, so the workdir
can end above the quota by what it writes in that time (about 20-150 MiB at page-cache
speed of 0.5-2 GiB/s, more with many parallel writers); each single file stays bounded
by RLIMIT_FSIZE.  Files written outside the workdir are not counted (bwrap's /tmp is a
size-limited tmpfs of its own; at the unshare and none levels world-writable host
directories are open to the program).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

POLL_S = 0.05


def disk_usage(root: Path) -> int:
    """Bytes allocated under ``root``."""
    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [str(root)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:  # vanished or unreadable meanwhile
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_blocks * 512
            if entry.is_dir(follow_symlinks=False):
                stack.append(entry.path)
    return total


async def watch(root: Path, quota_bytes: int) -> int:
    """Return the usage found once it exceeds ``quota_bytes`` (runs until cancelled otherwise)."""
    while True:
        used = await asyncio.to_thread(disk_usage, root)
        if used > quota_bytes:
            return used
        await asyncio.sleep(POLL_S)
