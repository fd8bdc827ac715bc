"""Workspaces: model paths stay inside, fixed files always come back unchanged."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from kisystem.errors import UsageError
from kisystem.sandbox import Limits, SandboxLevel, level_works, run_sandboxed
from kisystem.loop.workspace import UnsafePathError, Workspace, WorkspaceError

TEST_FILE = "tests/test_solution.py"
TEST_CODE = "from solution import add\n\ndef test_add():\n    assert add(2, 2) == 4\n"
FIXED: dict[str, str | bytes] = {TEST_FILE: TEST_CODE, "data/ref.bin": b"\x00\xffraw\r\n"}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.create(tmp_path, "run-1", 0)


def test_create_makes_fresh_directories_never_reused(tmp_path: Path) -> None:
    first = Workspace.create(tmp_path, "run-1", 0)
    second = Workspace.create(tmp_path, "run-1", 1)
    assert first.path == tmp_path.resolve() / "run-1" / "attempt-0" and first.path.is_dir()
    assert second.path.name == "attempt-1"
    with pytest.raises(WorkspaceError, match="never reused"):
        Workspace.create(tmp_path, "run-1", 0)
    for bad in ("", "..", "a/b"):
        with pytest.raises(UsageError):
            Workspace.create(tmp_path, bad, 0)


def test_write_files_creates_parents(ws: Workspace) -> None:
    paths = ws.write_files({"solution.py": "def add(a, b):\n    return a + b\n", "pkg/sub/m.py": "x = 1\n",
                            "./dot.py": ""})
    assert paths == [ws.path / "solution.py", ws.path / "pkg" / "sub" / "m.py", ws.path / "dot.py"]
    assert (ws.path / "pkg" / "sub" / "m.py").read_text() == "x = 1\n"


@pytest.mark.parametrize("bad", ["/etc/passwd", "../escape.py", "a/../../escape.py", "a/..", "", ".", "x\0y"])
def test_write_files_rejects_escapes(ws: Workspace, bad: str) -> None:
    with pytest.raises(UnsafePathError):
        ws.write_files({bad: "pwned"})
    assert not (ws.path.parent / "escape.py").exists()


def test_write_files_refuses_symlink_tricks(ws: Workspace, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (ws.path / "linkdir").symlink_to(outside)
    (ws.path / "linkfile").symlink_to(outside / "target.py")
    for rel in ("linkdir/evil.py", "linkfile"):
        with pytest.raises(UnsafePathError, match="symlink"):
            ws.write_files({rel: "pwned"})
    assert list(outside.iterdir()) == []


def test_restore_fixed_is_byte_exact_and_read_only(ws: Workspace) -> None:
    old_umask = os.umask(0o077)  # the mode must not depend on the umask
    try:
        ws.restore_fixed(FIXED)
    finally:
        os.umask(old_umask)
    assert (ws.path / TEST_FILE).read_text() == TEST_CODE
    assert (ws.path / "data" / "ref.bin").read_bytes() == b"\x00\xffraw\r\n"
    for path in ws.fixed_paths():
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert ws.fixed_paths() == sorted([ws.path / TEST_FILE, ws.path / "data" / "ref.bin"])


def test_model_overwriting_the_test_file_is_undone(ws: Workspace) -> None:
    ws.restore_fixed(FIXED)
    ws.write_files({TEST_FILE: "def test_add():\n    pass\n"})  # same name
    ws.restore_fixed(FIXED)
    assert (ws.path / TEST_FILE).read_text() == TEST_CODE


def test_model_path_with_dotdot_cannot_reach_the_test(ws: Workspace) -> None:
    ws.restore_fixed(FIXED)
    with pytest.raises(UnsafePathError):
        ws.write_files({"src/../tests/test_solution.py": "pwned"})
    assert (ws.path / TEST_FILE).read_text() == TEST_CODE


def test_restore_replaces_symlinks_directories_and_hard_links(ws: Workspace, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.py"
    elsewhere.write_text("def test_add(): pass\n")
    ws.write_files({"tests/__init__.py": ""})
    (ws.path / TEST_FILE).symlink_to(elsewhere)  # a symlink where the test belongs
    (ws.path / "data").mkdir()
    (ws.path / "data" / "ref.bin").mkdir()  # a directory where the data file belongs
    (ws.path / "data" / "ref.bin" / "junk").write_text("junk")
    ws.restore_fixed(FIXED)
    assert not (ws.path / TEST_FILE).is_symlink()
    assert (ws.path / TEST_FILE).read_text() == TEST_CODE
    assert (ws.path / "data" / "ref.bin").read_bytes() == b"\x00\xffraw\r\n"
    assert elsewhere.read_text() == "def test_add(): pass\n"  # the target was not written through
    # a hard link made to the restored test is not written through on the next restore
    os.link(ws.path / TEST_FILE, ws.path / "mine.py")
    ws.restore_fixed({TEST_FILE: "changed\n"})
    assert (ws.path / "mine.py").read_text() == TEST_CODE


def test_restore_replaces_a_symlinked_parent_directory(ws: Workspace, tmp_path: Path) -> None:
    fake = tmp_path / "fake_tests"
    fake.mkdir()
    (fake / "test_solution.py").write_text("fake")
    (ws.path / "tests").symlink_to(fake)
    ws.restore_fixed(FIXED)
    assert (ws.path / "tests").is_dir() and not (ws.path / "tests").is_symlink()
    assert (ws.path / TEST_FILE).read_text() == TEST_CODE
    assert (fake / "test_solution.py").read_text() == "fake"


REWRITE_TEST = f"""
import os
try:
    os.chmod({TEST_FILE!r}, 0o644)
    open({TEST_FILE!r}, "w").write("def test_add():\\n    pass\\n")
    print("rewrote the test")
except OSError as exc:
    print("cannot rewrite the test:", exc)
"""


@pytest.mark.parametrize("level", list(SandboxLevel))
async def test_program_rewriting_the_test_at_run_time(ws: Workspace, level: SandboxLevel) -> None:
    if not level_works(level):
        pytest.skip(f"sandbox level {level} does not work on this machine")
    ws.restore_fixed(FIXED)
    result = await run_sandboxed(["python", "-c", REWRITE_TEST], ws.path, 30, Limits(cpu_s=30),
                                 readonly_paths=ws.fixed_paths(), level=level)
    if level is SandboxLevel.BWRAP:
        assert "cannot rewrite the test" in result.output
        assert (ws.path / TEST_FILE).read_text() == TEST_CODE
    ws.restore_fixed(FIXED)  # at every level, the next restore puts it back
    assert (ws.path / TEST_FILE).read_text() == TEST_CODE
    assert stat.S_IMODE((ws.path / TEST_FILE).stat().st_mode) == 0o444
