"""The sandbox, exercised with real processes at every level this machine has."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from kisystem.sandbox import process as sandbox
from kisystem.sandbox import (
    Limits,
    ProcessResult,
    SandboxError,
    SandboxLevel,
    detect_sandbox_level,
    level_works,
    run_sandboxed,
)

LIMITS = Limits(cpu_s=30)


@pytest.fixture(params=list(SandboxLevel))
def level(request: pytest.FixtureRequest) -> SandboxLevel:
    if not level_works(request.param):
        pytest.skip(f"sandbox level {request.param} does not work on this machine")
    return request.param


@pytest.fixture
def cut_level(level: SandboxLevel) -> SandboxLevel:
    """A level that cuts the network."""
    if level is SandboxLevel.NONE:
        pytest.skip("level none does not cut the network")
    return level


async def run(level: SandboxLevel, workdir: Path, command: str | list[str], *,
              timeout_s: float = 30, limits: Limits = LIMITS, **kw: object) -> ProcessResult:
    return await run_sandboxed(command, workdir, timeout_s, limits, level=level, **kw)  # type: ignore[arg-type]


def py(code: str, *args: str) -> list[str]:
    return ["python", "-c", code, *args]


# --- process tree kill ------------------------------------------------------------

TREE = r"""
import os, time
def child(then):
    if os.fork() == 0:
        then()
        time.sleep(10**6)
def grandchildren():
    child(lambda: None)
    child(os.setsid)  # leaves the process group
child(grandchildren)
child(grandchildren)
if os.fork() == 0:  # a daemon: double fork, its parent exits, it is orphaned
    os.setsid()
    if os.fork() == 0:
        time.sleep(10**6)
    os._exit(0)
print("tree started", flush=True)
time.sleep(10**6)
"""
TREE_SIZE = 8  # main, 2 children, 4 grandchildren, 1 daemon


def cmdline(pid: str) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().split(b"\0")
    except OSError:
        return []


def marked(marker: str) -> dict[int, bool]:
    """Host pids of live processes whose command line holds ``marker``: is it python?"""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        args = cmdline(pid)
        if marker.encode() in args and alive(int(pid)):
            found[int(pid)] = args[0] == b"python"
    return found


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


async def wait_for_tree(marker: str) -> list[int]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        pids = [pid for pid, is_py in marked(marker).items() if is_py]
        if len(pids) == TREE_SIZE:
            return pids
        await asyncio.sleep(0.05)
    raise AssertionError(f"tree never started: {marked(marker)}")


async def test_timeout_kills_the_whole_tree(level: SandboxLevel, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    timeout = 3.0
    result, pids = await asyncio.gather(
        run(level, tmp_path, py(TREE, marker), timeout_s=timeout), wait_for_tree(marker))
    assert result.timed_out and result.signal == signal.SIGKILL and result.exit_code is None
    assert "tree started" in result.output
    assert result.duration_s < timeout + 2.5
    assert [pid for pid in pids if alive(pid)] == []
    assert marked(marker) == {}


async def test_cancel_kills_the_whole_tree(level: SandboxLevel, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    task = asyncio.create_task(run(level, tmp_path, py(TREE, marker), timeout_s=600))
    pids = await wait_for_tree(marker)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [pid for pid in pids if alive(pid)] == []
    assert marked(marker) == {}


async def test_background_children_die_when_the_program_exits(level: SandboxLevel, tmp_path: Path) -> None:
    marker = uuid.uuid4().hex
    script = f"python -c 'import time; time.sleep(10**6)' {marker} & echo done"
    result = await run(level, tmp_path, script, timeout_s=30)
    assert result.succeeded and result.output == "done\n"
    assert result.duration_s < 10
    assert marked(marker) == {}


# --- network ----------------------------------------------------------------------

CONNECT = r"""
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).sendall(b"hi")
except OSError as exc:
    print("connect failed:", exc)
    sys.exit(1)
print("connected")
"""


async def test_network_is_cut(cut_level: SandboxLevel, tmp_path: Path) -> None:
    accepted: list[bool] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(True)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = str(server.sockets[0].getsockname()[1])
    async with server:
        open_run = await run(cut_level, tmp_path, py(CONNECT, port), allow_network=True)
        assert open_run.succeeded, open_run.output  # the server IS reachable...
        assert accepted == [True]
        cut_run = await run(cut_level, tmp_path, py(CONNECT, port))
    assert cut_run.exit_code == 1 and "connect failed" in cut_run.output  # ...but not from inside
    assert accepted == [True]
    assert cut_run.sandbox is cut_level


# --- environment ------------------------------------------------------------------

SHOW_ENV = r"""
import json, os, sys
print(json.dumps(dict(os.environ)))
print("EXE", os.path.realpath(sys.executable))
try:
    print("PARENT", open(f"/proc/{sys.argv[1]}/environ", "rb").read())
except OSError as exc:
    print("PARENT unreadable", exc)
"""


async def test_environment_is_scrubbed(level: SandboxLevel, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KISYSTEM_TEST_SECRET", "hunter2-secret")
    result = await run(level, tmp_path, py(SHOW_ENV, str(os.getpid())), env_extra={"EXTRA": "yes"})
    env = json.loads(result.output.splitlines()[0])
    assert env["HOME"] == str(tmp_path.resolve())
    # bwrap gives the run its own /tmp; elsewhere the host's /tmp is shared, so use the workdir
    assert env["TMPDIR"] == "/tmp" if level is SandboxLevel.BWRAP else env["TMPDIR"].startswith(str(tmp_path.resolve()))
    assert env["LANG"] == "C.UTF-8" and env["PYTHONDONTWRITEBYTECODE"] == "1" and env["EXTRA"] == "yes"
    # the interpreter's base prefix, not a virtualenv inside the project (not visible under bwrap)
    assert env["PATH"].split(":")[0] == os.path.join(sys.base_prefix, "bin")
    assert f"EXE {os.path.realpath(sys.executable)}" in result.output
    assert "KISYSTEM_TEST_SECRET" not in env
    if level is not SandboxLevel.NONE:  # the namespaces hide our /proc/PID/environ too
        assert "hunter2-secret" not in result.output
        assert "PARENT unreadable" in result.output


# --- resource limits --------------------------------------------------------------

WRITE_BIG = r"""
import errno
try:
    with open("big.bin", "wb") as fh:
        fh.write(b"x" * (2 * 1024 * 1024))
except OSError as exc:
    print("write failed", errno.errorcode[exc.errno])
"""


async def test_file_size_limit(level: SandboxLevel, tmp_path: Path) -> None:
    limits = Limits(cpu_s=30, file_size_mb=1)
    result = await run(level, tmp_path, py(WRITE_BIG), limits=limits)
    assert "write failed EFBIG" in result.output
    assert (tmp_path / "big.bin").stat().st_size <= 1024 * 1024
    shell = await run(level, tmp_path, "head -c 2M /dev/zero > big2.bin", limits=limits)
    assert shell.signal == signal.SIGXFSZ and shell.exit_code is None
    assert (tmp_path / "big2.bin").stat().st_size <= 1024 * 1024


async def test_cpu_limit_stops_a_busy_loop(level: SandboxLevel, tmp_path: Path) -> None:
    result = await run(level, tmp_path, py("while True: pass"), timeout_s=30, limits=Limits(cpu_s=1))
    assert not result.timed_out
    assert result.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert result.duration_s < 10


SHOW_LIMITS = r"""
import resource as r
print(r.getrlimit(r.RLIMIT_CORE), r.getrlimit(r.RLIMIT_NOFILE), r.getrlimit(r.RLIMIT_AS))
try:
    bytearray(1024 * 1024 * 1024)
    print("allocated")
except MemoryError:
    print("MemoryError")
"""


async def test_core_files_address_space_and_open_files(level: SandboxLevel, tmp_path: Path) -> None:
    mib = 1024 * 1024
    limits = Limits(cpu_s=30, open_files=64, address_space_mb=512)
    result = await run(level, tmp_path, py(SHOW_LIMITS), limits=limits)
    assert result.output.splitlines() == [f"(0, 0) (64, 64) ({512 * mib}, {512 * mib})", "MemoryError"]
    unlimited = await run(level, tmp_path, py(SHOW_LIMITS), limits=Limits(cpu_s=30, address_space_mb=None))
    inf = sandbox.resource.RLIM_INFINITY
    assert unlimited.output.splitlines()[0].endswith(f"({inf}, {inf})")
    assert unlimited.output.splitlines()[1] == "allocated"


# --- read-only paths --------------------------------------------------------------

TAMPER = r"""
import os
attempts = {
    "write": lambda: open("tests/test_x.py", "w").write("assert True"),
    "unlink": lambda: os.unlink("tests/test_x.py"),
    "replace": lambda: (open("evil.py", "w").write("evil"), os.replace("evil.py", "tests/test_x.py")),
    "move dir": lambda: os.rename("tests", "moved"),
    "chmod": lambda: os.chmod("tests/test_x.py", 0o666),
}
for name, attempt in attempts.items():
    try:
        attempt()
        print(name, "SUCCEEDED")
    except OSError as exc:
        print(name, "failed", exc.errno)
open("tests/own_helper.py", "w").write("ok")  # the directory itself stays writable
print("helper written")
"""


async def test_readonly_paths_cannot_be_modified(tmp_path: Path) -> None:
    if not level_works(SandboxLevel.BWRAP):
        pytest.skip("read-only binds need bwrap, which does not work on this machine")
    fixed = tmp_path / "tests" / "test_x.py"
    fixed.parent.mkdir()
    fixed.write_text("assert 1 == 1\n")
    result = await run(SandboxLevel.BWRAP, tmp_path, py(TAMPER), readonly_paths=[fixed])
    assert "SUCCEEDED" not in result.output, result.output
    assert "helper written" in result.output
    assert fixed.read_text() == "assert 1 == 1\n"
    assert (tmp_path / "tests" / "own_helper.py").read_text() == "ok"


async def test_readonly_paths_must_not_be_symlinks(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "real" / "t.py").write_text("")
    with pytest.raises(SandboxError, match="symlink"):
        await run_sandboxed("true", tmp_path, 5, LIMITS, readonly_paths=[tmp_path / "link" / "t.py"])
    with pytest.raises(SandboxError, match="does not exist"):
        await run_sandboxed("true", tmp_path, 5, LIMITS, readonly_paths=[Path("missing.py")])


# --- output, exit codes, signals ----------------------------------------------------


async def test_output_is_truncated_keeping_head_and_tail(level: SandboxLevel, tmp_path: Path) -> None:
    code = "for i in range(100000): print(f'line {i}', flush=i % 1000 == 0)\nprint('THE END')"
    result = await run(level, tmp_path, py(code), max_output_bytes=10_000)
    assert result.succeeded
    assert result.output.startswith("line 0\nline 1\n")
    assert result.output.endswith("line 99999\nTHE END\n")
    assert "bytes of output truncated" in result.output
    assert len(result.output) < 10_200


async def test_endless_output_is_bounded(level: SandboxLevel, tmp_path: Path) -> None:
    result = await run(level, tmp_path, "yes spam", timeout_s=1.5, max_output_bytes=4096)
    assert result.timed_out
    assert len(result.output) < 4096 + 200


@pytest.mark.parametrize("shell", [False, True])
async def test_exit_code_and_signal(level: SandboxLevel, tmp_path: Path, shell: bool) -> None:
    segv = "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"
    command = f'python -c "{segv}"' if shell else py(segv)
    crashed = await run(level, tmp_path, command)
    assert (crashed.exit_code, crashed.signal, crashed.timed_out) == (None, signal.SIGSEGV, False)
    exit_3 = "echo out; echo err >&2; exit 3" if shell else py("raise SystemExit(3)")
    failed = await run(level, tmp_path, exit_3)
    assert (failed.exit_code, failed.signal, failed.succeeded) == (3, None, False)
    if shell:
        assert failed.output == "out\nerr\n"
    ok = await run(level, tmp_path, "true" if shell else py("pass"))
    assert ok.succeeded and ok.sandbox is level


# --- detection and setup errors ---------------------------------------------------


def test_detection_falls_back_to_none_with_a_warning(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    detect_sandbox_level.cache_clear()
    level_works.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=sandbox.__name__):
            assert detect_sandbox_level() is SandboxLevel.NONE
        assert "no sandbox available" in caplog.text
    finally:
        detect_sandbox_level.cache_clear()
        level_works.cache_clear()


def test_detection_prefers_bwrap() -> None:
    expected = next(lv for lv in SandboxLevel if level_works(lv))
    assert detect_sandbox_level() is expected


async def test_missing_workdir_or_wrapper_is_a_sandbox_error(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SandboxError, match="not a directory"):
        await run_sandboxed("true", tmp_path / "nope", 5, LIMITS)
    monkeypatch.setattr(sandbox, "_full_argv", lambda *args: ["/nonexistent/program"])
    with pytest.raises(SandboxError, match="cannot start"):
        await run_sandboxed("true", tmp_path, 5, LIMITS, level=SandboxLevel.NONE)


@pytest.mark.parametrize("delay_s", [0.0, 0.001, 0.005, 0.02, 0.1])
async def test_cancel_at_any_moment_leaves_nothing(level: SandboxLevel, tmp_path: Path, delay_s: float) -> None:
    """Also while the process is still being spawned (delay 0 and 1 ms)."""
    marker = uuid.uuid4().hex
    task = asyncio.create_task(run(level, tmp_path, py(TREE, marker), timeout_s=600))
    await asyncio.sleep(delay_s)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.3)  # a leaked tree would have started by now
    assert marked(marker) == {}


async def test_cpu_time_is_measured_from_outside(level: SandboxLevel, tmp_path: Path) -> None:
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass"
    # the burner is an orphan (its parent exits at once): its CPU time must still count
    script = f"(setsid python -c '{burn}' &); sleep 1.2; echo 'print(1)' > t.py; python -m py_compile t.py"
    result = await run(level, tmp_path, script)
    assert result.succeeded, result.output
    if level is SandboxLevel.NONE:
        assert result.cpu_s is None
    else:
        assert result.cpu_s is not None and 0.5 <= result.cpu_s < 1.2, result.cpu_s


async def test_gcc_builds_under_the_process_limit(level: SandboxLevel, tmp_path: Path) -> None:
    if not sandbox.shutil.which("gcc"):
        pytest.skip("no gcc")
    (tmp_path / "m.c").write_text('#include <stdio.h>\nint main(void){puts("built");return 0;}\n')
    result = await run(level, tmp_path, "gcc -O2 -o m m.c && ./m", limits=Limits(cpu_s=30, processes=32))
    assert result.succeeded and "built" in result.output, result.output


async def test_peak_memory_and_cpu_share_are_measured_from_outside(level: SandboxLevel, tmp_path: Path) -> None:
    # the 300 MB are held by a grandchild: the peak is the largest process of the whole run
    hold = "b = bytearray(300 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096])"
    result = await run(level, tmp_path, f"sh -c \"python -c '{hold}'\"; python -c 'pass'",
                       limits=Limits(cpu_s=30, address_space_mb=None))
    assert result.succeeded, result.output
    if level is SandboxLevel.NONE:
        assert (result.peak_mb, result.cpu_percent) == (None, None)
    else:
        assert result.peak_mb is not None and 300 <= result.peak_mb < 450, result.peak_mb
        assert result.cpu_percent is not None and 0 < result.cpu_percent <= 100, result.cpu_percent
