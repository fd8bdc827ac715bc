"""What the program sees: the bwrap and unshare command lines.

bwrap starts from an empty root and binds read-only only what builds need (/usr and the
merged-/usr symlinks, /etc, the interpreter's prefix, GPU device nodes), gives the run its
own size-limited /tmp, and binds the workdir read-write with the fixed files read-only on
top.  $HOME, the kisystem home, other workspaces, /root, /home, /var, /run, /opt, /srv,
/mnt, /media and /work are simply not there.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from kisystem.paths import default_home

_UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
# A shell as pid 1 of the namespace, because pid 1 ignores signals it has no handler for
# (a program killing itself with SIGSEGV would otherwise just go on).
INIT = ["/bin/sh", "-c", '"$@"; exit $?', "sh"]
_SYSTEM_DIRS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CUDA_BIN = "/usr/local/cuda/bin"
# root's setpriv inside bwrap needs these to drop to the run's uid (then it has none).
_DROP_CAPS = ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID", "--cap-add", "CAP_SETPCAP"]


def python_prefixes() -> list[str]:
    """Interpreter prefixes the program gets: the base prefix, and a virtualenv only when
    it is not private (inside $HOME, the kisystem home or the current project)."""
    prefixes = [sys.base_prefix]
    if sys.prefix != sys.base_prefix and not _private(Path(sys.prefix)):
        prefixes.insert(0, sys.prefix)
    return prefixes


def _private(path: Path) -> bool:
    private = (Path.home(), default_home(), Path.cwd(), Path("/root"), Path("/home"))
    return any(path.resolve().is_relative_to(p.resolve()) for p in private)


def search_path() -> str:
    dirs = [os.path.join(prefix, "bin") for prefix in python_prefixes()] + [_BASE_PATH]
    if os.path.isdir(_CUDA_BIN):
        dirs.append(_CUDA_BIN)
    return ":".join(dirs)


def bwrap_argv(workdir: Path, readonly: Sequence[Path], *, allow_network: bool,
               tmp_bytes: int, drop_caps: bool) -> list[str]:
    argv = ["bwrap", "--die-with-parent", "--unshare-pid", "--as-pid-1"]
    if not allow_network:
        argv += ["--unshare-net"]
    argv += _system_binds()
    for prefix in python_prefixes():
        argv += _parents(Path(prefix)) + ["--ro-bind", prefix, prefix]
    argv += ["--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]
    argv += _gpu_binds()
    argv += _parents(workdir) + ["--bind", str(workdir), str(workdir)]
    argv += _readonly_binds(workdir, readonly)
    argv += ["--chdir", str(workdir)]
    # Our shell as pid 1 (not bwrap's init, whose monitor exits without reaping it): then
    # every process of the namespace is reaped up the chain and its CPU time counted.
    return argv + (_DROP_CAPS if drop_caps else []) + ["--"] + INIT


def _system_binds() -> list[str]:
    argv = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for path in _SYSTEM_DIRS:
        if os.path.islink(path):  # merged /usr: /bin -> usr/bin
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    return argv


def _parents(path: Path) -> list[str]:
    """Directories bwrap would otherwise create 0700 on the way to a bind."""
    argv: list[str] = []
    for parent in reversed(path.parents[:-1]):
        if parent.is_relative_to("/usr") or parent.is_relative_to("/etc"):
            return argv
        if str(parent) == "/tmp":  # the run's own tmpfs is already there
            continue
        argv += ["--perms", "0755", "--dir", str(parent)]
    return argv


def _gpu_binds() -> list[str]:
    nvidia = sorted(glob.glob("/dev/nvidia*"))
    argv: list[str] = []
    for dev in nvidia + sorted(glob.glob("/dev/dri")):
        argv += ["--dev-bind", dev, dev]
    if nvidia and os.path.isdir("/sys"):
        argv += ["--ro-bind", "/sys", "/sys"]
    return argv


def _readonly_binds(workdir: Path, readonly: Sequence[Path]) -> list[str]:
    # Each directory between the workdir and a fixed file becomes a mount point (bound
    # onto itself, still writable): a mount point cannot be renamed, so the program
    # cannot move the read-only file aside and put its own in its place.
    binds: list[str] = []
    seen: set[Path] = set()
    for path in readonly:
        if path.is_relative_to(workdir):
            for parent in reversed(path.relative_to(workdir).parents[:-1]):
                if (ancestor := workdir / parent) not in seen:
                    seen.add(ancestor)
                    binds += ["--bind", str(ancestor), str(ancestor)]
        binds += ["--ro-bind", str(path), str(path)]
    return binds


def unshare_argv(*, allow_network: bool) -> list[str]:
    return _UNSHARE + ([] if allow_network else ["--net"]) + ["--"] + INIT
