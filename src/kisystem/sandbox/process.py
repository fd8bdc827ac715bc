"""Run untrusted generated code: scrubbed environment, rlimits, no network, no orphans.

Three levels, best first (:data:`kisystem.sandbox.levels.LEVEL_LIMITS` says plainly what
each does and does not protect): ``bwrap`` (network, pid and mount namespaces; a minimal
view of the machine, see :mod:`kisystem.sandbox.view`), ``unshare`` (network and pid
namespaces, needs root) and ``none`` (rlimits and the kill below only; a warning is logged).

Run by root, every run executes as a uid of its own (:mod:`kisystem.sandbox.users`), so
RLIMIT_NPROC holds and file modes count.  The workdir's total size is watched
(:mod:`kisystem.sandbox.quota`).  Every run gets its own session, and a random token in its
environment; when the run ends, times out, exceeds its quota or is cancelled, every process
of its uid, its process group, the sandbox's pid namespace and every process still carrying
the token are killed with SIGKILL.  The call returns within the timeout plus a grace of a
few seconds at most, even when a surviving process keeps the output pipe open.

``ProcessResult.cpu_s`` is the user+system CPU time of the direct child and every process
reaped below it, from kisystem's own ``wait4``: the program cannot write it.  Inside a pid
namespace (bwrap, unshare) orphans are reaped by the namespace's init, so it covers the
whole run; on a run that had to be killed it may be a lower bound.  At level ``none``
orphans escape the accounting, so it is None there.  ``ProcessResult.peak_mb`` comes from the
same ``wait4``: the peak resident memory of the largest process of the run (ru_maxrss).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import resource
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from kisystem.errors import KisystemError
from kisystem.parent_death import die_with_parent
from kisystem.paths import SANDBOX_TOKEN_ENV
from kisystem.sandbox import kill, quota, users, view
from kisystem.sandbox.levels import SandboxLevel, describe_level

log = logging.getLogger(__name__)

DEFAULT_MAX_OUTPUT = 256 * 1024
TOKEN_VAR = SANDBOX_TOKEN_ENV
_MIB = 1024 * 1024
_DRAIN_S = 1.0  # after the kill: how long a still-open output pipe may delay the return
_REAP_S = 1.0


class SandboxError(KisystemError):
    """A sandboxed run could not be set up safely (not a failure of the program)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits.  ``address_space_mb=None`` for CUDA code.  ``processes`` counts
    the run's processes and threads together (RLIMIT_NPROC); ``disk_mb`` is the workdir's
    total size (a watchdog, see :mod:`kisystem.sandbox.quota`) and the size of bwrap's /tmp."""

    cpu_s: int
    file_size_mb: int = 256
    open_files: int = 256
    address_space_mb: int | None = 4096
    processes: int = 128
    disk_mb: int = 1024


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
    quota_exceeded: bool = False  # killed because the workdir outgrew ``Limits.disk_mb``
    peak_mb: float | None = None  # peak resident memory of the run's largest process; None where cpu_s is

    @property
    def cpu_percent(self) -> float | None:
        """CPU used over the run's wall time, in % of the whole machine (all cores)."""
        if self.cpu_s is None or self.duration_s <= 0:
            return None
        return 100.0 * self.cpu_s / self.duration_s / (os.cpu_count() or 1)

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.quota_exceeded


# --- level detection -------------------------------------------------------------


@functools.cache
def detect_sandbox_level() -> SandboxLevel:
    """The best level that really works here; probed once per process."""
    for level in (SandboxLevel.BWRAP, SandboxLevel.UNSHARE):
        if level_works(level):
            return level
    log.warning("no sandbox available (bwrap and unshare failed); install bubblewrap. %s",
                describe_level(SandboxLevel.NONE))
    return SandboxLevel.NONE


@functools.cache
def level_works(level: SandboxLevel) -> bool:
    """Whether ``level`` really runs a program here (it is tried once, then cached)."""
    if level is SandboxLevel.NONE:
        return True
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        uid = users.allocate_uid() if users.can_drop() else None
        try:
            if uid is not None:
                users.hand_over(workdir, (), uid)
            return _works(_full_argv(level, ["true"], workdir, (), False, uid, _MIB))
        finally:
            if uid is not None:
                users.release_uid(uid)


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


def _full_argv(level: SandboxLevel, argv: list[str], workdir: Path, readonly: Sequence[Path],
               allow_network: bool, uid: int | None, tmp_bytes: int) -> list[str]:
    drop = users.setpriv_argv(uid, read_all=level is not SandboxLevel.BWRAP) if uid is not None else []
    if level is SandboxLevel.BWRAP:
        return view.bwrap_argv(workdir, readonly, allow_network=allow_network, tmp_bytes=tmp_bytes,
                               drop_caps=uid is not None) + drop + argv
    if level is SandboxLevel.UNSHARE:
        return view.unshare_argv(allow_network=allow_network) + drop + argv
    return drop + argv


# --- environment and limits ------------------------------------------------------


def _scrubbed_env(level: SandboxLevel, workdir: Path, token: str,
                  extra: Mapping[str, str] | None) -> dict[str, str]:
    if level is SandboxLevel.BWRAP:
        tmpdir = "/tmp"  # the run's own size-limited tmpfs
    else:
        (workdir / ".tmp").mkdir(exist_ok=True)
        tmpdir = str(workdir / ".tmp")
    env = {
        "PATH": view.search_path(),
        "HOME": str(workdir),
        "LANG": "C.UTF-8",
        "TMPDIR": tmpdir,
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.update(extra or {})
    env[TOKEN_VAR] = token
    return env


def _limiter(limits: Limits, uid: int | None) -> Callable[[], None]:
    # Without a uid of its own the run shares RLIMIT_NPROC's count with all of the user's
    # processes, so the limit is raised by what the user already has.
    processes = limits.processes if uid is not None else limits.processes + users.task_count(os.getuid())
    wanted = [
        (resource.RLIMIT_CPU, limits.cpu_s, limits.cpu_s + 1),  # SIGXCPU, then SIGKILL
        (resource.RLIMIT_FSIZE, limits.file_size_mb * _MIB, limits.file_size_mb * _MIB),
        (resource.RLIMIT_NOFILE, limits.open_files, limits.open_files),
        (resource.RLIMIT_CORE, 0, 0),
        (resource.RLIMIT_NPROC, processes, processes),
    ]
    if limits.address_space_mb is not None:
        size = limits.address_space_mb * _MIB
        wanted.append((resource.RLIMIT_AS, size, size))

    def apply() -> None:  # runs in the child between fork and exec
        die_with_parent()  # a SIGKILLed kisystem takes the run along (unshare then ends its namespace)
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

    def text(self) -> str:
        head = self._head.decode(errors="replace")
        tail = self._tail.decode(errors="replace")
        if self._dropped:
            return f"{head}\n[... {self._dropped} bytes of output truncated ...]\n{tail}"
        return head + tail


async def _fd_ready(fd: int, *, write: bool = False) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    (loop.add_writer if write else loop.add_reader)(fd, wake)
    try:
        await ready
    finally:
        (loop.remove_writer if write else loop.remove_reader)(fd)


async def _consume(fd: int, out: _Output) -> None:
    os.set_blocking(fd, False)
    while True:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            await _fd_ready(fd)
            continue
        if not chunk:
            return
        out.feed(chunk)


async def _feed(fd: int, data: bytes) -> None:
    """Write ``data`` to the program's stdin; a program that stops reading is its own loss."""
    os.set_blocking(fd, False)
    rest = memoryview(data)
    with contextlib.suppress(OSError):
        while rest:
            try:
                rest = rest[os.write(fd, rest):]
            except BlockingIOError:
                await _fd_ready(fd, write=True)


# --- running ----------------------------------------------------------------------


def _exit_status(returncode: int, level: SandboxLevel, argv: list[str]) -> tuple[int | None, int | None]:
    if returncode < 0:
        return None, -returncode
    via_wrapper = level is not SandboxLevel.NONE or argv[0] == "/bin/sh"
    if via_wrapper and 128 < returncode <= 128 + signal.SIGRTMAX:
        return None, returncode - 128
    return returncode, None


@dataclass
class _Ending:
    timed_out: bool = False
    quota_used: int | None = None  # bytes found when the quota was exceeded
    returncode: int | None = None
    cpu_s: float | None = None
    peak_mb: float | None = None
    ended_at: float = 0.0  # monotonic time of the exit, timeout or quota kill (before the cleanup)


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
    uid = users.allocate_uid() if users.can_drop() else None
    try:
        env = _scrubbed_env(level, workdir, secrets.token_hex(16), env_extra)
        if uid is not None:
            users.hand_over(workdir, readonly, uid)
        full = _full_argv(level, argv, workdir, readonly, allow_network, uid, limits.disk_mb * _MIB)
        output, stdout = _Output(max_output_bytes), _Output(max_output_bytes)
        start = time.monotonic()
        ending = await _run(full, workdir, env, limits, uid, timeout_s, output, stdout,
                            stdin_data=stdin_data, split=split_stdout)
        duration = ending.ended_at - start  # up to the exit: the cleanup is not the program's time
    finally:
        if uid is not None:
            users.release_uid(uid)
    return _result(ending, level, argv, output, stdout, duration, limits)


def _result(ending: _Ending, level: SandboxLevel, argv: list[str], output: _Output, stdout: _Output,
            duration: float, limits: Limits) -> ProcessResult:
    exit_code, sig = _exit_status(ending.returncode or 0, level, argv)
    text = output.text()
    if ending.timed_out or ending.quota_used is not None:
        exit_code, sig = None, int(signal.SIGKILL)
    if ending.quota_used is not None:
        text += f"\ndisk quota of {limits.disk_mb} MiB exceeded: killed\n"
    measured = level is not SandboxLevel.NONE
    return ProcessResult(exit_code, sig, ending.timed_out, text, duration, level, stdout.text(),
                         ending.cpu_s if measured else None, quota_exceeded=ending.quota_used is not None,
                         peak_mb=ending.peak_mb if measured else None)


async def _run(full: list[str], workdir: Path, env: dict[str, str], limits: Limits, uid: int | None,
               timeout_s: float, output: _Output, stdout: _Output, *, stdin_data: bytes | None,
               split: bool) -> _Ending:
    # Popen returns synchronously: no await lies between the fork and the guard below,
    # so a cancellation can never leave a started process tree unwatched.
    try:
        proc = subprocess.Popen(
            full, cwd=workdir, env=env, stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE if split else subprocess.STDOUT,
            start_new_session=True, preexec_fn=_limiter(limits, uid))
    except OSError as exc:
        raise SandboxError(f"cannot start {full[0]}: {exc}") from exc
    ids = kill.RunIds(proc.pid, f"{TOKEN_VAR}={env[TOKEN_VAR]}".encode(), uid)
    ending = _Ending()
    tasks = _io_tasks(proc, output, stdout, stdin_data, split)
    try:
        ending = await _supervise(proc.pid, workdir, timeout_s, limits.disk_mb * _MIB)
    finally:
        await _cleanup(proc, ids, tasks, ending)
    return ending


def _io_tasks(proc: subprocess.Popen[bytes], output: _Output, stdout: _Output, stdin_data: bytes | None,
              split: bool) -> list[asyncio.Task[None]]:
    assert proc.stdout is not None
    tasks = []
    if split:
        assert proc.stderr is not None
        tasks.append(asyncio.ensure_future(_consume(proc.stderr.fileno(), output)))
        tasks.append(asyncio.ensure_future(_consume(proc.stdout.fileno(), stdout)))
    else:
        tasks.append(asyncio.ensure_future(_consume(proc.stdout.fileno(), output)))
    if stdin_data is not None:
        assert proc.stdin is not None
        fd = proc.stdin.fileno()

        async def feed_and_close() -> None:
            try:
                await _feed(fd, stdin_data)
            finally:
                proc.stdin.close()  # type: ignore[union-attr]

        tasks.append(asyncio.ensure_future(feed_and_close()))
    return tasks


async def _supervise(pid: int, workdir: Path, timeout_s: float, quota_bytes: int) -> _Ending:
    """Wait until the program exits, times out or outgrows the quota."""
    exited = asyncio.ensure_future(_exited(pid))
    watchdog = asyncio.ensure_future(quota.watch(workdir, quota_bytes))
    try:
        await asyncio.wait({exited, watchdog}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        exited.cancel()
        watchdog.cancel()
    ended_at = time.monotonic()
    if exited.done() and not exited.cancelled():
        return _Ending(ended_at=ended_at)
    if watchdog.done() and not watchdog.cancelled():
        return _Ending(quota_used=watchdog.result(), ended_at=ended_at)
    return _Ending(timed_out=True, ended_at=ended_at)


async def _exited(pid: int) -> None:
    """Until ``pid`` has exited (not reaped: its status stays for :func:`_reap`)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        await _fd_ready(fd)
    finally:
        os.close(fd)


async def _reap(proc: subprocess.Popen[bytes], ending: _Ending) -> None:
    """Collect the direct child's status and CPU time with wait4 (the program cannot fake it)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(_exited(proc.pid), _REAP_S)
    try:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    except ChildProcessError:
        return
    if pid == proc.pid:
        proc.returncode = ending.returncode = os.waitstatus_to_exitcode(status)
        ending.cpu_s = usage.ru_utime + usage.ru_stime
        ending.peak_mb = usage.ru_maxrss / 1024  # KiB on Linux


async def _cleanup(proc: subprocess.Popen[bytes], ids: kill.RunIds, tasks: list[asyncio.Task[None]],
                   ending: _Ending) -> None:
    # Runs on exit, timeout, quota and cancellation alike: whatever the program left
    # behind dies.  The first kill is synchronous so that even a second cancel cannot skip it.
    pending = kill.kill_once(ids)
    try:
        await kill.kill_all(ids, pending)
        await _reap(proc, ending)
        # Everything of the run is dead, so the pipes close now, unless a process that
        # escaped (only possible when not root, at level none) still holds them.
        await asyncio.wait_for(asyncio.shield(asyncio.gather(*tasks)), _DRAIN_S)
    except TimeoutError:
        log.warning("output pipe of pid %d still open after the kill", proc.pid)
    finally:
        for task in tasks:
            task.cancel()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        if proc.returncode is None:  # not reaped yet: never let Popen reap a reused pid later
            proc.returncode = -signal.SIGKILL
