"""What kisystem measures of resource use: GGUF sizes of a KV cache, a server's memory beyond its
models, and the ``server_memory`` events a run leaves."""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kisystem.improve import resources
from kisystem.improve.resources import MB, ServerWatch, gguf_metadata, kv_cache_bytes, process_memory_mb
from kisystem.loop.supervisor import LoopEvent
from kisystem.models import catalog
from kisystem.store.learning import LearningStore

U32, F32, STRING, ARRAY, U64 = 4, 6, 8, 9, 10


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def _kv(key: str, kind: int, value) -> bytes:
    head = _string(key) + struct.pack("<I", kind)
    if kind == U32:
        return head + struct.pack("<I", value)
    if kind == F32:
        return head + struct.pack("<f", value)
    if kind == STRING:
        return head + _string(value)
    item, values = value  # an array
    body = b"".join(_string(v) if item == STRING else struct.pack("<I", v) for v in values)
    return head + struct.pack("<IQ", item, len(values)) + body


def write_gguf(path: Path, arch: str = "qwen2", layers: int = 24, embedding: int = 896, heads: int = 14,
               kv_heads: int | None = 2) -> Path:
    pairs = [_kv("general.architecture", STRING, arch),
             _kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["<s>", "hello", "wörld"] * 50)),  # skipped
             _kv("tokenizer.ggml.token_type", ARRAY, (U32, list(range(150)))),  # skipped
             _kv(f"{arch}.block_count", U32, layers), _kv(f"{arch}.embedding_length", U32, embedding),
             _kv(f"{arch}.attention.head_count", U32, heads), _kv(f"{arch}.rope.freq_base", F32, 1e6)]
    if kv_heads is not None:
        pairs.append(_kv(f"{arch}.attention.head_count_kv", U32, kv_heads))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, len(pairs)) + b"".join(pairs) + b"\0" * 64)
    return path


def test_kv_cache_of_grouped_query_attention(tmp_path: Path) -> None:
    meta = gguf_metadata(write_gguf(tmp_path / "m.gguf"))  # Qwen2.5-Coder-0.5B's shape
    assert meta["qwen2.block_count"] == 24 and "tokenizer.ggml.tokens" not in meta
    # 4096 tokens x 24 layers x 2 KV heads x 64 (K) + 64 (V) x 2 bytes = 48 MiB
    assert kv_cache_bytes(meta, 4096) == 4096 * 24 * 2 * 128 * 2 == 48 * MB


def test_kv_cache_without_grouped_heads_uses_all_heads(tmp_path: Path) -> None:
    meta = gguf_metadata(write_gguf(tmp_path / "m.gguf", arch="llama", layers=2, embedding=64, heads=4,
                                    kv_heads=None))
    assert kv_cache_bytes(meta, 10) == 10 * 2 * 4 * (16 + 16) * 2


def test_not_a_gguf_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "x.gguf").write_bytes(b"PK\3\4 not a model")
    with pytest.raises(ValueError, match="not a GGUF file"):
        gguf_metadata(tmp_path / "x.gguf")


def test_real_weights_give_the_known_kv_size() -> None:
    path = Path(os.environ.get("KISYSTEM_TEST_HOME", Path.home() / ".kisystem")) / "models"
    model = catalog.embedded_model("qwen2.5-coder-0.5b")
    if not (path / model.filename).is_file():
        pytest.skip("Qwen2.5-Coder-0.5B is not pulled here")
    meta = gguf_metadata(path / model.filename)
    assert kv_cache_bytes(meta, model.n_ctx) == 48 * MB  # 24 layers, 2 KV heads of 64


def test_process_memory_of_this_process_and_of_a_gone_one() -> None:
    peak, now = process_memory_mb(os.getpid())
    assert 10 < now <= peak
    assert process_memory_mb(2**22 + 12345) is None


@dataclass
class Spec:
    name: str
    embedded: str | None
    context_tokens: int | None = None


@dataclass
class FakeFleet:
    home: Path
    specs: list[Spec] = field(default_factory=lambda: [Spec("coder", "qwen2.5-coder-0.5b"),
                                                       Spec("tiny", "smollm2-135m")])
    urls: dict[str, str] = field(default_factory=lambda: {"coder": "http://127.0.0.1:18591",
                                                          "tiny": "http://127.0.0.1:18592"})


def exit_event(run_id: str, model: str = "coder") -> LoopEvent:
    return LoopEvent("exit", "task", run_id, 1, model, {"outcome": "success"})


def test_server_watch_stores_the_memory_beyond_weights_and_kv(tmp_path: Path, monkeypatch) -> None:
    models = tmp_path / "models"
    models.mkdir()
    write_gguf(models / catalog.embedded_model("qwen2.5-coder-0.5b").filename)
    write_gguf(models / catalog.embedded_model("smollm2-135m").filename, arch="llama", layers=30, embedding=576,
               heads=9, kv_heads=3)
    me = os.getpid()  # this process stands in for the server: both models on it
    monkeypatch.setattr(resources.server_records, "state_of", lambda home, port: ("shared", me))
    forwarded: list[LoopEvent] = []
    with LearningStore.open(tmp_path / "learning.db") as store:
        watch = ServerWatch(FakeFleet(tmp_path), store, models, forward=forwarded.append,  # type: ignore[arg-type]
                            slots=2)
        first, second = store.start_run("a", "Python/General", "coder"), store.start_run("b", "Python/General", "tiny")
        watch(exit_event(first))
        watch(exit_event(second, "tiny"))  # the same server within a minute: not sampled again
        events = [e for run in (first, second) for e in store.events(run) if e.kind == "server_memory"]
    assert len(forwarded) == 2 and len(events) == 1
    data = events[0].payload
    weights = (catalog.embedded_model("qwen2.5-coder-0.5b").size + catalog.embedded_model("smollm2-135m").size) / MB
    assert data["pid"] == me and data["models"] == ["coder", "tiny"]
    assert data["weights_mb"] == pytest.approx(weights, abs=0.1)
    # two slots of 4096 tokens each: 2 x (48 MiB, and 4096 x 30 x 3 x 128 x 2 bytes = 90 MiB)
    assert data["kv_mb"] == pytest.approx(2 * (48 + 90), abs=0.1)
    assert data["beyond_mb"] == pytest.approx(data["peak_mb"] - data["weights_mb"] - data["kv_mb"], abs=0.2)


def test_server_watch_never_breaks_a_run(tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(resources.server_records, "state_of", lambda home, port: ("shared", os.getpid()))
    forwarded: list[LoopEvent] = []
    with LearningStore.open(tmp_path / "learning.db") as store:
        watch = ServerWatch(FakeFleet(tmp_path), store, tmp_path / "no-models", forward=forwarded.append)  # type: ignore[arg-type]
        watch(exit_event(store.start_run("a", "Python/General", "coder")))
    assert len(forwarded) == 1 and "server memory not measured" in caplog.text
