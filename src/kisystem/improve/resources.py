"""What kisystem measures of resource use, for the ``resource_inefficiency`` opportunity.

Two kinds of measurement, both stored as run events in the learning database:

- **build and test phases**: the sandbox's ``wait4`` gives each phase's peak resident memory
  (the largest process of the run) and its CPU time; the ``build``/``test`` events carry
  ``peak_mb`` and ``cpu_percent`` (CPU over wall time, in % of the whole machine).
- **embedded model servers**: at the end of a run, :class:`ServerWatch` reads the serving
  process's peak resident memory (``VmHWM`` in /proc) and subtracts what its models must
  take: the GGUF files (the weights) and their KV caches (``n_ctx`` x layers x the K and V
  widths x 2 bytes, from each GGUF's metadata).  The rest, llama.cpp's compute buffers, the
  Python process and anything that leaks, is stored as a ``server_memory`` event with
  ``beyond_mb``, at most once a minute per server.

:func:`samples` turns a window's events into :class:`ResourceSample` values: per domain and
phase the largest peak and the mean CPU (over >= ``min_samples`` phases), per server its
largest ``beyond_mb``.
"""

from __future__ import annotations

import json
import logging
import struct
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from kisystem.loop.supervisor import LoopEvent
from kisystem.models import catalog, server_records
from kisystem.models.server import EmbeddedFleet, port_of, served_n_ctx
from kisystem.store.learning import LearningStore
from kisystem.store.times import iso as _iso

log = logging.getLogger(__name__)

SAMPLE_EVERY_S = 60.0
PHASES = ("build", "test")
KV_BYTES_PER_VALUE = 2  # llama.cpp's default f16 KV cache
MB = 1024 * 1024


@dataclass(frozen=True)
class ResourceSample:
    """A measured resource use in MB and % of the machine's CPU.  ``agent`` is the loop part
    (``build``, ``test``), the model of a server that serves only it, or ``server``."""

    agent: str
    what: str
    part: str
    memory_mb: float | None = None
    cpu_percent: float | None = None
    domain: str | None = None


# -- GGUF metadata: just enough to size a KV cache --------------------------------------------

_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
_WANTED = ("block_count", "embedding_length", "attention.head_count", "attention.head_count_kv",
           "attention.key_length", "attention.value_length")


def gguf_metadata(path: Path) -> dict[str, Any]:
    """The scalar metadata of a GGUF file (v2/v3); arrays such as the vocabulary are skipped."""
    with path.open("rb") as f:
        if f.read(4) != b"GGUF":
            raise ValueError(f"{path} is not a GGUF file")
        version, _tensors, count = struct.unpack("<IQQ", f.read(20))
        if version < 2:
            raise ValueError(f"{path}: GGUF version {version} is not supported")
        found: dict[str, Any] = {}
        for _ in range(count):
            key = _string(f)
            (kind,) = struct.unpack("<I", f.read(4))
            value = _value(f, kind)
            if value is not None:
                found[key] = value
        return found


def _string(f: BinaryIO) -> str:
    (n,) = struct.unpack("<Q", f.read(8))
    return f.read(n).decode("utf-8", "replace")


def _value(f: BinaryIO, kind: int) -> Any:
    if kind in _SCALARS:
        fmt = "<" + _SCALARS[kind]
        return struct.unpack(fmt, f.read(struct.calcsize(fmt)))[0]
    if kind == _STRING:
        return _string(f)
    if kind != _ARRAY:
        raise ValueError(f"unknown GGUF value type {kind}")
    item, n = struct.unpack("<IQ", f.read(12))
    if item in _SCALARS:
        f.seek(n * struct.calcsize("<" + _SCALARS[item]), 1)
    else:
        for _ in range(n):
            _value(f, item)
    return None


def kv_cache_bytes(meta: dict[str, Any], n_ctx: int) -> int:
    """Bytes of an f16 KV cache of ``n_ctx`` tokens for the model ``meta`` describes."""
    arch = meta["general.architecture"]
    get = lambda key, default=None: meta.get(f"{arch}.{key}", default)  # noqa: E731
    heads = get("attention.head_count")
    head_dim = get("embedding_length") // heads
    kv_heads = get("attention.head_count_kv", heads)
    width = kv_heads * (get("attention.key_length", head_dim) + get("attention.value_length", head_dim))
    return n_ctx * get("block_count") * width * KV_BYTES_PER_VALUE


# -- embedded servers ----------------------------------------------------------------------


@dataclass(frozen=True)
class ServerMemory:
    pid: int
    models: tuple[str, ...]
    peak_mb: float
    rss_mb: float
    weights_mb: float
    kv_mb: float

    @property
    def beyond_mb(self) -> float:
        return self.peak_mb - self.weights_mb - self.kv_mb

    def payload(self) -> dict[str, Any]:
        figures = {k: round(getattr(self, k), 1) for k in ("peak_mb", "rss_mb", "weights_mb", "kv_mb", "beyond_mb")}
        return {"pid": self.pid, "models": list(self.models), **figures}


def process_memory_mb(pid: int) -> tuple[float, float] | None:
    """(peak, current) resident memory of ``pid`` in MB, from /proc; None when it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    kib = {k: float(v.split()[0]) for k, _, v in (line.partition(":") for line in lines) if k in ("VmHWM", "VmRSS")}
    if len(kib) < 2:
        return None
    return kib["VmHWM"] / 1024, kib["VmRSS"] / 1024


def served_model_bytes(name: str, models_dir: Path, n_ctx: int | None = None) -> tuple[int, int]:
    """(weights, KV cache) bytes of an embedded catalog model served with ``n_ctx`` tokens of
    context over all its slots (default: the catalog's, one slot)."""
    model = catalog.embedded_model(name)
    path = models_dir / model.filename
    return model.size, kv_cache_bytes(gguf_metadata(path), n_ctx or model.n_ctx)


def server_memory(pid: int, models: dict[str, tuple[str, int | None]], models_dir: Path) -> ServerMemory | None:
    """The memory of server ``pid``, which serves ``models`` (inventory name -> (catalog name, n_ctx))."""
    measured = process_memory_mb(pid)
    if measured is None:
        return None
    sizes = [served_model_bytes(embedded, models_dir, n_ctx) for embedded, n_ctx in models.values()]
    return ServerMemory(pid, tuple(sorted(models)), measured[0], measured[1],
                        sum(w for w, _ in sizes) / MB, sum(kv for _, kv in sizes) / MB)


class ServerWatch:
    """A LoopEvent observer: at a run's exit, the memory of the server of its model, stored
    as a ``server_memory`` event of the run (at most once per SAMPLE_EVERY_S per server)."""

    def __init__(self, fleet: EmbeddedFleet, store: LearningStore, models_dir: Path,
                 forward: Callable[[LoopEvent], None] | None = None, every_s: float = SAMPLE_EVERY_S,
                 slots: int = 1) -> None:
        """``slots``: the parallel slots the servers run with (each holds a whole context's KV cache)."""
        self.fleet, self.store, self.models_dir, self.slots = fleet, store, models_dir, slots
        self.forward = forward
        self.every_s = every_s
        self._last: dict[int, float] = {}

    def __call__(self, event: LoopEvent) -> None:
        if event.kind == "exit":
            try:
                self._sample(event)
            except Exception as err:  # an observer: a failed measurement must not end the run
                log.warning("server memory not measured after run %s: %s: %s", event.run_id, type(err).__name__, err)
        if self.forward is not None:
            self.forward(event)

    def _sample(self, event: LoopEvent) -> None:
        served = self._served_by_pid()
        pid = next((p for p, models in served.items() if event.model in models), None)
        if pid is None or time.monotonic() - self._last.get(pid, -self.every_s) < self.every_s:
            return
        memory = server_memory(pid, served[pid], self.models_dir)
        if memory is not None:
            self._last[pid] = time.monotonic()
            self.store.append_event(event.run_id, "server_memory", memory.payload())

    def _served_by_pid(self) -> dict[int, dict[str, tuple[str, int | None]]]:
        by_pid: dict[int, dict[str, tuple[str, int | None]]] = defaultdict(dict)
        for spec in self.fleet.specs:
            _state, pid = server_records.state_of(self.fleet.home, port_of(self.fleet.urls[spec.name]))
            if pid is not None and spec.embedded:
                by_pid[pid][spec.name] = (spec.embedded, served_n_ctx(spec) * self.slots)
        return by_pid


# -- from events to samples ------------------------------------------------------------------

_EVENTS = """
SELECT e.kind, e.payload, r.domain FROM run_events e JOIN runs r ON r.run_id = e.run_id
WHERE e.kind IN ('build', 'test', 'server_memory') AND e.ts >= ? AND e.ts <= ?
"""


def samples(store: LearningStore, since: datetime, until: datetime, min_samples: int) -> list[ResourceSample]:
    """The window's measurements: per domain and phase its largest peak memory and its mean
    CPU (once it has ``min_samples`` measured phases), per server its largest ``beyond_mb``."""
    rows = store.query(_EVENTS, (_iso(since), _iso(until)))
    events = [(kind, json.loads(payload), domain) for kind, payload, domain in rows]
    return _phase_samples(events, min_samples) + _server_samples(events)


def _phase_samples(events: Iterable[tuple[str, dict[str, Any], str]], min_samples: int) -> list[ResourceSample]:
    peaks: dict[tuple[str, str], list[float]] = defaultdict(list)
    cpus: dict[tuple[str, str], list[float]] = defaultdict(list)
    for kind, data, domain in events:
        if kind in PHASES:
            if isinstance(data.get("peak_mb"), (int, float)):
                peaks[(domain, kind)].append(float(data["peak_mb"]))
            if isinstance(data.get("cpu_percent"), (int, float)):
                cpus[(domain, kind)].append(float(data["cpu_percent"]))
    found = []
    for domain, phase in sorted(set(peaks) | set(cpus)):
        cpu = cpus.get((domain, phase), [])
        found.append(ResourceSample(
            phase, f"{phase} phase ({len(peaks.get((domain, phase), []))} runs)", phase,
            memory_mb=max(peaks[(domain, phase)]) if peaks.get((domain, phase)) else None,
            cpu_percent=round(sum(cpu) / len(cpu), 1) if len(cpu) >= min_samples else None, domain=domain))
    return found


def _server_samples(events: Iterable[tuple[str, dict[str, Any], str]]) -> list[ResourceSample]:
    worst: dict[tuple[str, ...], dict[str, Any]] = {}
    for kind, data, _domain in events:
        models = tuple(data.get("models", ()))
        if kind == "server_memory" and (models not in worst or data["beyond_mb"] > worst[models]["beyond_mb"]):
            worst[models] = data
    return [ResourceSample(models[0] if len(models) == 1 else "server",
                           f"server of {', '.join(models)}: peak {data['peak_mb']:g} MB, weights "
                           f"{data['weights_mb']:g} MB, KV {data['kv_mb']:g} MB; beyond them", "server",
                           memory_mb=data["beyond_mb"])
            for models, data in sorted(worst.items())]

