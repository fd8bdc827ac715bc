"""Security probes: what generated code can reach at each sandbox level.

Every probe is CONTAINED at the default level (bwrap); for ``unshare`` and ``none`` the
table EXPECTED says what that level does not contain, matching LEVEL_LIMITS.  The
expectations are for the CI setup: kisystem runs as root, so every run gets its own uid.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
from pathlib import Path

import pytest

from kisystem.paths import default_home
from kisystem.sandbox import LEVEL_LIMITS, Limits, SandboxLevel, level_works, run_sandboxed
from kisystem.sandbox.quota import disk_usage

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="probe expectations assume kisystem runs as root")

SRC_DIR = Path(__file__).resolve().parents[2] / "src"
CONTAINED, REACHED = "contained", "reached"
# probe -> level -> outcome; everything not listed is contained
EXPECTED: dict[str, dict[SandboxLevel, str]] = {
    "read_home": {SandboxLevel.UNSHARE: REACHED, SandboxLevel.NONE: REACHED},
    "list_kisystem_home": {SandboxLevel.UNSHARE: REACHED, SandboxLevel.NONE: REACHED},
    "write_host_tmp": {SandboxLevel.UNSHARE: REACHED, SandboxLevel.NONE: REACHED},
    "loopback": {SandboxLevel.NONE: REACHED},
}
LIMITS = Limits(cpu_s=30)


def expected(probe: str, level: SandboxLevel) -> str:
    return EXPECTED.get(probe, {}).get(level, CONTAINED)


@pytest.fixture(params=list(SandboxLevel))
def level(request: pytest.FixtureRequest) -> SandboxLevel:
    if not level_works(request.param):
        pytest.skip(f"sandbox level {request.param} does not work on this machine")
    return request.param


async def run_py(level: SandboxLevel, workdir: Path, code: str, *args: str, limits: Limits = LIMITS,
                 timeout_s: float = 30, **kw: object):  # type: ignore[no-untyped-def]
    return await run_sandboxed(["python", "-c", code, *args], workdir, timeout_s, limits, level=level, **kw)  # type: ignore[arg-type]


def test_level_limits_text_matches_the_table() -> None:
    assert "READABLE" in LEVEL_LIMITS[SandboxLevel.UNSHARE] and "NETWORK" in LEVEL_LIMITS[SandboxLevel.NONE]
    assert "/tmp" in LEVEL_LIMITS[SandboxLevel.UNSHARE] and "network cut" in LEVEL_LIMITS[SandboxLevel.BWRAP]


READ = r"""
import sys
try:
    print("READ", open(sys.argv[1]).read())
except OSError as exc:
    print("BLOCKED", exc)
"""


async def test_read_a_file_in_home(level: SandboxLevel, tmp_path: Path) -> None:
    secret = Path.home() / f"kisystem-probe-{secrets.token_hex(6)}.txt"
    secret.write_text("top-secret-probe")
    try:
        result = await run_py(level, tmp_path, READ, str(secret))
    finally:
        secret.unlink()
    reached = "top-secret-probe" in result.output
    assert reached == (expected("read_home", level) == REACHED), result.output


LIST = r"""
import os, sys
try:
    print("LIST", os.listdir(sys.argv[1]))
except OSError as exc:
    print("BLOCKED", exc)
"""


async def test_list_the_kisystem_home(level: SandboxLevel, tmp_path: Path) -> None:
    home = default_home()
    created = not home.exists()
    home.mkdir(parents=True, exist_ok=True)
    planted = home / f"probe-{secrets.token_hex(6)}.txt"
    planted.write_text("answer")
    try:
        result = await run_py(level, tmp_path, LIST, str(home))
    finally:
        planted.unlink()
        if created:
            home.rmdir()
    reached = planted.name in result.output
    assert reached == (expected("list_kisystem_home", level) == REACHED), result.output


WRITE = r"""
import sys
for target in sys.argv[1:]:
    try:
        open(target, "w").write("pwned")
        print("WROTE", target)
    except OSError as exc:
        print("BLOCKED", target, exc)
"""


async def test_write_outside_the_workspace(level: SandboxLevel, tmp_path: Path) -> None:
    name = f"kisystem-probe-{secrets.token_hex(6)}"
    targets = {"write_host_tmp": Path("/tmp") / name, "write_home": Path.home() / name,
               "write_src": SRC_DIR / name}
    work = tmp_path / "work"
    work.mkdir()
    try:
        result = await run_py(level, work, WRITE, *map(str, targets.values()))
        for probe, target in targets.items():
            assert target.exists() == (expected(probe, level) == REACHED), (probe, result.output)
    finally:
        for target in targets.values():
            target.unlink(missing_ok=True)


TAMPER = r"""
import os
for name, attempt in {
    "write": lambda: open("fixed/test_x.py", "w").write("assert True"),
    "unlink": lambda: os.unlink("fixed/test_x.py"),
    "replace": lambda: (open("evil.py", "w").write("evil"), os.replace("evil.py", "fixed/test_x.py")),
    "move dir": lambda: os.rename("fixed", "moved"),
    "chmod": lambda: os.chmod("fixed/test_x.py", 0o666),
}.items():
    try:
        attempt()
        print(name, "SUCCEEDED")
    except OSError as exc:
        print(name, "failed", exc.errno)
open("fixed/helper.py", "w").write("ok")
print("helper written")
"""


async def test_overwrite_a_fixed_file(level: SandboxLevel, tmp_path: Path) -> None:
    fixed = tmp_path / "fixed" / "test_x.py"
    fixed.parent.mkdir()
    fixed.write_text("assert 1 == 1\n")
    fixed.chmod(0o444)
    result = await run_py(level, tmp_path, TAMPER, readonly_paths=[fixed])
    assert "SUCCEEDED" not in result.output, result.output
    assert result.output.count("failed") == 5 and "helper written" in result.output
    assert fixed.read_text() == "assert 1 == 1\n"
    assert fixed.stat().st_uid == 0 and fixed.stat().st_mode & 0o777 == 0o444


CONNECT = r"""
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).sendall(b"hi")
    print("CONNECTED")
except OSError as exc:
    print("BLOCKED", exc)
"""


async def test_connect_to_loopback(level: SandboxLevel, tmp_path: Path) -> None:
    accepted: list[bool] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(True)
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    async with server:
        result = await run_py(level, tmp_path, CONNECT, str(server.sockets[0].getsockname()[1]))
    reached = "CONNECTED" in result.output
    assert reached == (expected("loopback", level) == REACHED), result.output


FORK = r"""
import os, time
ok = 0
for _ in range(100):
    try:
        if os.fork() == 0:
            time.sleep(3)
            os._exit(0)
        ok += 1
    except OSError:
        pass
print("FORKED", ok, flush=True)
"""


async def test_fork_more_than_the_process_limit(level: SandboxLevel, tmp_path: Path) -> None:
    result = await run_py(level, tmp_path, FORK, limits=Limits(cpu_s=30, processes=32))
    forked = int(result.output.split("FORKED")[1].split()[0])
    assert 20 <= forked < 32, result.output  # the limit holds, and it is not absurdly low


FILL = r"""
import os
for i in range(64):
    with open(f"fill{i}.bin", "wb") as fh:
        for _ in range(16):
            fh.write(os.urandom(1024 * 1024))
print("ALL WRITTEN")
"""
QUOTA_MB, SLACK_MB = 64, 192  # the watchdog's overshoot allowance (see kisystem.sandbox.quota)


async def test_write_more_than_the_disk_quota(level: SandboxLevel, tmp_path: Path) -> None:
    result = await run_py(level, tmp_path, FILL, limits=Limits(cpu_s=60, disk_mb=QUOTA_MB), timeout_s=60)
    used_mb = disk_usage(tmp_path) / 2**20
    assert result.quota_exceeded and not result.succeeded and "ALL WRITTEN" not in result.output
    assert f"disk quota of {QUOTA_MB} MiB exceeded: killed" in result.output
    assert QUOTA_MB < used_mb < QUOTA_MB + SLACK_MB, used_mb


DAEMON = r"""
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open("daemon.pid", "w") as fh:
            fh.write(str(os.getpid()))
        os.execve(sys.executable, [sys.executable, "-c", "import time; time.sleep(10**6)  # MARKER"], {})
    os._exit(0)
time.sleep(0.5)
print("parent done", flush=True)
"""


def _host_pid_of_daemon(marker: str) -> list[int]:
    """Host pids of live processes running the daemon's sleep."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
            state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmd and state not in ("Z", "X"):
            found.append(int(pid))
    return found


@pytest.mark.parametrize("timeout_s", [2.0, 30.0])
async def test_leave_a_daemon_behind(level: SandboxLevel, tmp_path: Path, timeout_s: float) -> None:
    marker = f"probe-daemon-{secrets.token_hex(4)}"
    code = DAEMON.replace("MARKER", marker)  # find it on the host by its command line
    # The daemon keeps stdout open; with the short timeout the parent is also still asleep.
    script = code if timeout_s > 5 else code.replace("time.sleep(0.5)", "time.sleep(60)")
    start = time.monotonic()
    result = await run_py(level, tmp_path, script, timeout_s=timeout_s)
    elapsed = time.monotonic() - start
    assert (tmp_path / "daemon.pid").exists()  # it did start
    assert "parent done" in result.output or timeout_s < 5
    assert _host_pid_of_daemon(marker) == []
    assert elapsed < (timeout_s if timeout_s < 5 else 0.5) + 3.0, elapsed
    assert result.timed_out == (timeout_s < 5)
