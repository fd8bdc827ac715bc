"""Run untrusted generated code: scrubbed environment, rlimits, no network, no orphans.

Three levels, best first: ``bwrap`` (network, pid and mount namespaces; the filesystem
read-only except the workdir; fixed files bound read-only), ``unshare`` (network and pid
namespaces, needs root) and ``none`` (rlimits and the kill below only; a warning is logged).

Every run gets its own session, and a random token in its environment; when the run
ends, times out or is cancelled, the process group, the sandbox's pid namespace and
every process still carrying the token are killed with SIGKILL, and the call returns only
once they are gone.  GPU device nodes (/dev/nvidia*, /dev/dri) are bound into bwrap.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import glob
import logging
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from kisystem.errors import KisystemError
from kisystem.paths import SANDBOX_TOKEN_ENV

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT = 256 * 1024
TOKEN_VAR = SANDBOX_TOKEN_ENV
_BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_CUDA_BIN = "/usr/local/cuda/bin"
_UNSHARE = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
# A shell as pid 1 of the namespace, because pid 1 ignores signals it has no handler for
# (a program killing itself with SIGSEGV would otherwise just go on).
_INIT = ["/bin/sh", "-c", '"$@"; exit $?', "sh"]
_DRAIN_S = 2.0


class SandboxError(KisystemError):
    """A sandboxed run could not be set up safely (not a failure of the program)."""


class SandboxLevel(StrEnum):
    BWRAP = "bwrap"
    UNSHARE = "unshare"
    NONE = "none"


@dataclass(frozen=True)
class Limits:
    """Per-process resource limits.  ``address_space_mb=None`` for CUDA code."""

    cpu_s: int
    file_size_mb: int = 256
    open_files: int = 256
    address_space_mb: int | None = 4096


@dataclass(frozen=True)
class ProcessResult:
    """How a run ended.  A death by signal has ``exit_code=None`` and ``signal`` set,
    also where a shell or bwrap reported it as exit status 128+N."""

    exit_code: int | None
    signal: int | None
    timed_out: bool
    output: str  # stdout and stderr together; stderr only where ``split_stdout`` was asked for
    duration_s: float
    sandbox: SandboxLevel
    stdout: str = ""  # with ``split_stdout`` only
    cpu_s: float | None = None  # user+system CPU of the whole run, measured from outside; None if unknown

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


# --- level detection -------------------------------------------------------------


@functools.cache
def detect_sandbox_level() -> SandboxLevel:
    """The best level that really works here; probed once per process."""
    for level in (SandboxLevel.BWRAP, SandboxLevel.UNSHARE):
        if level_works(level):
            return level
    log.warning("no sandbox available (bwrap and unshare failed): generated code runs "
                "with rlimits only and CAN reach the network; install bubblewrap")
    return SandboxLevel.NONE


@functools.cache
def level_works(level: SandboxLevel) -> bool:
    """Whether ``level`` really runs a program here (it is tried once, then cached)."""
    if level is SandboxLevel.BWRAP:
        with tempfile.TemporaryDirectory() as tmp:
            return _works(_bwrap_prefix(Path(tmp), (), allow_network=False) + ["true"])
    if level is SandboxLevel.UNSHARE:
        return _works(_unshare_prefix(allow_network=False) + ["true"])
    return True


def _works(argv: list[str]) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    try:
        done = subprocess.run(argv, capture_output=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return False
    if done.returncode != 0:
        log.debug("sandbox probe %s failed: %s", argv[0], done.stderr.decode(errors="replace"))
    return done.returncode == 0


# --- command line -----------------------------------------------------------------


def _bwrap_prefix(workdir: Path, readonly: Sequence[Path], *, allow_network: bool) -> list[str]:
    argv = ["bwrap", "--die-with-parent", "--unshare-pid"]
    if not allow_network:
        argv += ["--unshare-net"]
    argv += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
    if not allow_network:
        # /run holds host daemons' unix sockets, which a network namespace does not cut.
        argv += ["--tmpfs", "/run"]
    for dev in sorted(glob.glob("/dev/nvidia*")) + sorted(glob.glob("/dev/dri")):
        argv += ["--dev-bind", dev, dev]
    argv += _hidden_python()
    argv += ["--bind", str(workdir), str(workdir)]
    argv += _readonly_binds(workdir, readonly)
    return argv + ["--chdir", str(workdir)]


def _hidden_python() -> list[str]:
    """Bind the interpreter's prefix back in where a tmpfs above would hide it."""
    binds: list[str] = []
    for prefix in sorted({sys.prefix, sys.base_prefix}):
        if prefix.startswith(("/tmp/", "/run/")):
            binds += ["--ro-bind", prefix, prefix]
    return binds


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


def _unshare_prefix(*, allow_network: bool) -> list[str]:
    return _UNSHARE + ([] if allow_network else ["--net"]) + ["--"] + _INIT


def _command_argv(command: str | Sequence[str]) -> list[str]:
    if isinstance(command, str):
        return ["/bin/sh", "-c", command]
    argv = list(command)
    if not argv:
        raise SandboxError("empty command")
    return argv


def _checked_readonly(workdir: Path, paths: Sequence[Path]) -> list[Path]:
    checked = []
    for path in paths:
        path = Path(os.path.normpath(workdir / path))  # a relative path is in the workdir
        if os.path.realpath(path) != str(path):
            raise SandboxError(f"read-only path {path} is or passes through a symlink")
        if not path.exists():
            raise SandboxError(f"read-only path {path} does not exist")
        checked.append(path)
    return checked


def _full_argv(level: SandboxLevel, argv: list[str], workdir: Path,
               readonly: Sequence[Path], allow_network: bool) -> list[str]:
    if level is SandboxLevel.BWRAP:
        return _bwrap_prefix(workdir, readonly, allow_network=allow_network) + argv
    if level is SandboxLevel.UNSHARE:
        return _unshare_prefix(allow_network=allow_network) + argv
    return argv


# --- environment and limits ------------------------------------------------------


def _scrubbed_env(workdir: Path, token: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    dirs = [os.path.dirname(sys.executable), _BASE_PATH]
    if os.path.isdir(_CUDA_BIN):
        dirs.append(_CUDA_BIN)
    tmpdir = workdir / ".tmp"
    tmpdir.mkdir(exist_ok=True)
    env = {
        "PATH": ":".join(dirs),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "TMPDIR": str(tmpdir),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra or {})
    env[TOKEN_VAR] = token
    return env


def _limiter(limits: Limits) -> Callable[[], None]:
    mib = 1024 * 1024
    wanted = [
        (resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 1),  # SIGXCPU, then SIGKILL
        (resource.RLIMIT_FSIZE, limits.file_size_mb * mib, limits.file_size_mb * mib),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),
    ]
    if limits.address_space_mb is not None:
        size = limits.address_space_mb * mib
        wanted.append((resource.RLIMIT_AS, size, size))

    def apply() -> None:  # runs in the child between fork and exec
        for which, soft, hard in wanted:
            _, current_hard = resource.getrlimit(which)
            if current_hard != resource.RLIM_INFINITY:
                soft, hard = min(soft, current_hard), min(hard, current_hard)
            resource.setrlimit(which, (soft, hard))

    return apply


# --- output -----------------------------------------------------------------------


class _Output:
    """Keeps the first and the last ``limit/2`` bytes and counts what fell between."""

    def __init__(self, limit: int) -> None:
        self._half = max(limit // 2, 1)
        self._head = bytearray()
        self._tail = bytearray()
        self._dropped = 0

    def feed(self, data: bytes) -> None:
        room = self._half - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        self._tail += data
        if (excess := len(self._tail) - self._half) > 0:
            del self._tail[:excess]
            self._dropped += excess

    async def consume(self, stream: asyncio.StreamReader) -> None:
        while chunk := await stream.read(65536):
            self.feed(chunk)

    def text(self) -> str:
        head = self._head.decode(errors="replace")
        tail = self._tail.decode(errors="replace")
        if self._dropped:
            return f"{head}\n[... {self._dropped} bytes of output truncated ...]\n{tail}"
        return head + tail


# --- killing ----------------------------------------------------------------------


def _run_pids(pgid: int, token: str) -> set[int]:
    """Live processes of this run: carrying its token, or in its process group."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = set()
    for name in os.listdir("/proc"):
        mine = name.isdigit() and int(name) != os.getpid()
        if mine and (_in_group(name, pgid) or _has_token(name, needle)):
            found.add(int(name))
    return found


def _stat_fields(pid: str) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()  # state, ppid, pgrp, ...
    except (OSError, IndexError):
        return []


def _in_group(pid: str, pgid: int) -> bool:
    fields = _stat_fields(pid)
    return len(fields) > 2 and fields[0] not in ("Z", "X") and fields[2] == str(pgid)


def _has_token(pid: str, needle: bytes) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return needle in fh.read().split(b"\0")
    except OSError:
        return False


def _alive(pid: int) -> bool:
    fields = _stat_fields(str(pid))
    return bool(fields) and fields[0] not in ("Z", "X")


def _kill_once(pgid: int, token: str) -> set[int]:
    """SIGKILL the group and every process of the run; returns the pids found."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
    pids = _run_pids(pgid, token)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return pids


async def _kill_all(pgid: int, token: str, pending: set[int]) -> None:
    """Kill again until every process of the run is gone (a zombie at most); this also
    catches processes forked while the previous scan ran."""
    for _ in range(200):
        pending = {pid for pid in pending | _kill_once(pgid, token) if _alive(pid)}
        if not pending:
            return
        await asyncio.sleep(0.01)
    log.warning("sandboxed processes %s survived SIGKILL", sorted(pending))


# --- running ----------------------------------------------------------------------


def _exit_status(returncode: int, level: SandboxLevel, argv: list[str]) -> tuple[int | None, int | None]:
    if returncode < 0:
        return None, -returncode
    via_wrapper = level is not SandboxLevel.NONE or argv[0] == "/bin/sh"
    if via_wrapper and 128 < returncode <= 128 + signal.SIGRTMAX:
        return None, returncode - 128
    return returncode, None


async def run_sandboxed(
    command: str | Sequence[str],
    workdir: Path,
    timeout_s: float,
    limits: Limits,
    *,
    readonly_paths: Sequence[Path] = (),
    allow_network: bool = False,
    env_extra: Mapping[str, str] | None = None,
    level: SandboxLevel | None = None,
    max_output_bytes: int = DEFAULT_MAX_OUTPUT,
    stdin_data: bytes | None = None,
    split_stdout: bool = False,
) -> ProcessResult:
    """Run ``command`` (a str goes through ``/bin/sh -c``) in ``workdir``, sandboxed.

    ``stdin_data`` is fed to the program's stdin (else it reads /dev/null);
    ``split_stdout`` keeps stdout apart (``ProcessResult.stdout``) from stderr (``output``).
    """
    level = level or detect_sandbox_level()
    workdir = workdir.resolve()
    if not workdir.is_dir():
        raise SandboxError(f"workdir {workdir} is not a directory")
    argv = _command_argv(command)
    readonly = _checked_readonly(workdir, readonly_paths)
    token = secrets.token_hex(16)
    full = _full_argv(level, argv, workdir, readonly, allow_network)
    output, stdout = _Output(max_output_bytes), _Output(max_output_bytes)
    start = time.monotonic()
    proc = await _spawn(full, workdir, _scrubbed_env(workdir, token, env_extra), limits,
                        stdin=stdin_data is not None, split=split_stdout)
    readers = [asyncio.create_task(output.consume(proc.stderr if split_stdout else proc.stdout))]  # type: ignore[arg-type]
    if split_stdout:
        readers.append(asyncio.create_task(stdout.consume(proc.stdout)))  # type: ignore[arg-type]
    if stdin_data is not None:
        readers.append(asyncio.create_task(_feed(proc.stdin, stdin_data)))  # type: ignore[arg-type]
    reader = asyncio.gather(*readers)
    try:
        timed_out = await _wait(proc, timeout_s)
        duration = time.monotonic() - start  # up to the exit, without the cleanup below
    finally:
        await _cleanup(proc, token, reader)
    exit_code, sig = _exit_status(proc.returncode or 0, level, argv)
    if timed_out:
        exit_code, sig = None, int(signal.SIGKILL)
    return ProcessResult(exit_code, sig, timed_out, output.text(), duration, level, stdout.text())


async def _feed(stream: asyncio.StreamWriter, data: bytes) -> None:
    """Write ``data`` to the program's stdin and close it; a program that stops reading is its own loss."""
    with contextlib.suppress(ConnectionError, BrokenPipeError, OSError):
        stream.write(data)
        await stream.drain()
        stream.close()


async def _spawn(argv: list[str], workdir: Path, env: dict[str, str], limits: Limits, *,
                 stdin: bool = False, split: bool = False) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *argv, cwd=workdir, env=env, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE if split else subprocess.STDOUT,
            start_new_session=True, preexec_fn=_limiter(limits))
    except OSError as exc:
        raise SandboxError(f"cannot start {argv[0]}: {exc}") from exc


async def _wait(proc: asyncio.subprocess.Process, timeout_s: float) -> bool:
    """Wait for the program itself to exit; True on timeout."""
    # Not proc.wait(): that also waits for the output pipe to close, which a background
    # child still holding it open would delay until the timeout.
    try:
        await asyncio.wait_for(_exited(proc), timeout_s)
    except TimeoutError:
        return True
    return False


async def _exited(proc: asyncio.subprocess.Process) -> None:
    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # already exited and reaped
        return
    except (OSError, AttributeError):  # no pidfd (old kernel): poll
        while proc.returncode is None:
            await asyncio.sleep(0.05)
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def _cleanup(proc: asyncio.subprocess.Process, token: str, reader: asyncio.Future[Any]) -> None:
    # Runs on success, timeout and cancellation alike: whatever the program left behind
    # dies.  The first kill is synchronous so that even a second cancel cannot skip it.
    pending = _kill_once(proc.pid, token)
    try:
        await _kill_all(proc.pid, token, pending)
        await proc.wait()
        await asyncio.wait_for(asyncio.shield(reader), _DRAIN_S)
    except TimeoutError:
        log.warning("output pipe of pid %d still open after the kill", proc.pid)
    finally:
        reader.cancel()
