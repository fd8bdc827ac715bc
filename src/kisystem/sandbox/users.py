"""The unprivileged uid a run executes as, and the workdir made writable for it.

Root is exempt from RLIMIT_NPROC and ignores file modes, so when kisystem runs as root
every run gets a uid of its own from a high range (one not used by any live process),
the program drops to it with ``setpriv``, and everything in the workdir is chowned to it.
Read-only fixed files stay root-owned 0444; the workdir itself and the directories that
lead to fixed files become root-owned, group-writable for the run and sticky (1775), so
the program can add files there but cannot rename or delete the fixed files or those
directories.  Not run by root, nothing changes
hands: RLIMIT_NPROC then counts every process of the user, so it is raised by the
number the user already has.
"""

from __future__ import annotations

import os
import random
import shutil
import stat
import threading
from collections.abc import Sequence
from pathlib import Path

UID_BASE = 200_000
UID_SPAN = 60_000
_STICKY_GROUP_DIR = 0o1775
_READ_ONLY = 0o444
_allocated: set[int] = set()
_lock = threading.Lock()


def can_drop() -> bool:
    """Whether runs can get their own uid (kisystem is root and setpriv is installed)."""
    return os.geteuid() == 0 and shutil.which("setpriv") is not None


def allocate_uid() -> int:
    """A uid no live process has and no other run of this process holds."""
    with _lock:
        busy = uids_in_use() | _allocated
        while (uid := UID_BASE + random.randrange(UID_SPAN)) in busy:
            pass
        _allocated.add(uid)
        return uid


def release_uid(uid: int) -> None:
    with _lock:
        _allocated.discard(uid)


def _status_ids(pid: str) -> tuple[set[int], int]:
    """The uids (real, effective, saved, fs) and the thread count of ``pid``."""
    uids: set[int] = set()
    threads = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("Uid:"):
                    uids = {int(field) for field in line.split()[1:]}
                elif line.startswith("Threads:"):
                    threads = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return uids, threads


def uids_in_use() -> set[int]:
    used: set[int] = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        used |= _status_ids(pid)[0]
    return used


def pids_of_uid(uid: int) -> set[int]:
    """Live pids with ``uid`` among their real, effective, saved or filesystem uids."""
    return {int(pid) for pid in filter(str.isdigit, os.listdir("/proc")) if uid in _status_ids(pid)[0]}


def task_count(uid: int) -> int:
    """Threads (what RLIMIT_NPROC counts) of processes whose uids include ``uid``."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        uids, threads = _status_ids(pid)
        if uid in uids:
            total += threads
    return total


def setpriv_argv(uid: int, *, read_all: bool) -> list[str]:
    """Become ``uid`` with no capabilities; with ``read_all`` keep only CAP_DAC_READ_SEARCH
    (unshare and none levels: the interpreter may sit in a directory only root can search)."""
    keep = "-all,+dac_read_search" if read_all else "-all"
    argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups",
            f"--inh-caps={keep}", f"--bounding-set={keep}"]
    if read_all:
        argv.append("--ambient-caps=+dac_read_search")
    return argv + ["--"]


def hand_over(workdir: Path, readonly: Sequence[Path], uid: int) -> None:
    """Make ``workdir`` the run's (see the module docstring); never follows a symlink."""
    fixed = {path for path in readonly if path.is_relative_to(workdir)}
    guarded = {workdir} | {parent for path in fixed for parent in path.parents
                           if parent.is_relative_to(workdir)}
    for directory in guarded:
        os.lchown(directory, 0, uid)
        os.chmod(directory, _STICKY_GROUP_DIR)
    for path in fixed:
        os.lchown(path, 0, 0)
        if stat.S_ISREG(path.lstat().st_mode):
            os.chmod(path, _READ_ONLY)
    _walk(workdir, uid, fixed, guarded)


def _walk(directory: Path, uid: int, fixed: set[Path], guarded: set[Path]) -> None:
    with os.scandir(directory) as entries:
        for entry in entries:
            path = Path(entry.path)
            if path in fixed:  # a read-only directory stays root's, with all it holds
                continue
            info = entry.stat(follow_symlinks=False)
            # A hard link could point at a file outside the workdir: never chown one.
            hard_linked = stat.S_ISREG(info.st_mode) and info.st_nlink > 1
            if path not in guarded and info.st_uid != uid and not hard_linked:
                os.lchown(path, uid, uid)
            if stat.S_ISDIR(info.st_mode):
                _walk(path, uid, fixed, guarded)
