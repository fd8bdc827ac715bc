"""The sandbox levels, and in plain words what each one does and does not protect."""

from __future__ import annotations

from enum import StrEnum


class SandboxLevel(StrEnum):
    BWRAP = "bwrap"
    UNSHARE = "unshare"
    NONE = "none"


_COMMON = ("Every level: a scrubbed environment, rlimits (CPU, file size, open files, address "
           "space, processes), a watchdog on the workdir's total size, and the run's whole "
           "process tree killed when it ends.  Run by root, the program runs as its own "
           "unprivileged uid, so root-owned read-only fixed files cannot be changed.")

LEVEL_LIMITS: dict[SandboxLevel, str] = {
    SandboxLevel.BWRAP: (
        "bwrap: protects: network cut (loopback too, and host unix sockets are not mounted); "
        "own pid namespace; a minimal view of the machine: /usr, /etc and the interpreter "
        "read-only, a private size-limited /tmp, the workdir; $HOME, the kisystem home, other "
        "workspaces, /root, /home, /var, /run, /opt, /srv, /mnt, /work are not there. "
        "Does not protect: what is world-readable in /etc and /usr is readable; the kernel "
        "is shared (a kernel exploit escapes); /tmp counts against memory, not the disk quota."),
    SandboxLevel.UNSHARE: (
        "unshare: protects: network cut (own network namespace, loopback included); own pid "
        "namespace, so no process survives the run. Does not protect: the whole filesystem is "
        "visible and READABLE (the program keeps CAP_DAC_READ_SEARCH so it can run the "
        "interpreter under /root): $HOME, ~/.ssh, the kisystem home and other runs' answers; it "
        "can WRITE wherever its uid may (world-writable dirs such as the host's /tmp, outside "
        "the disk quota); host unix sockets (e.g. in /run) are reachable."),
    SandboxLevel.NONE: (
        "none: protects: rlimits, the disk-quota watchdog and, run by root, killing every "
        "process of the run's uid. Does not protect: the NETWORK is reachable (internet, "
        "loopback services, unix sockets); the whole filesystem is visible and READABLE "
        "($HOME, ~/.ssh, the kisystem home); it can WRITE wherever its uid may (host /tmp); it "
        "sees and may signal host processes of its uid; not run by root, a daemon that leaves "
        "the session and scrubs its environment survives; no trustworthy CPU time (cpu_s is None)."),
}

_RANK = {SandboxLevel.BWRAP: 2, SandboxLevel.UNSHARE: 1, SandboxLevel.NONE: 0}


def describe_level(level: SandboxLevel | str) -> str:
    """What ``level`` protects and what it does not, followed by what every level does."""
    return f"{LEVEL_LIMITS[SandboxLevel(level)]} {_COMMON}"


def level_rank(level: SandboxLevel | str) -> int:
    """bwrap 2 > unshare 1 > none 0, for comparing with a configured minimum level."""
    return _RANK[SandboxLevel(level)]
