"""The machine's resources on the Overview: CPU, memory and GPUs sampled while the dashboard serves, and
each model server's memory as the loop last measured it.

- :class:`ProcReader` reads ``/proc/stat`` (CPU time counters), ``/proc/meminfo`` (``MemAvailable``)
  and, where ``nvidia-smi`` is installed, each GPU's utilization and memory (one call with a short
  timeout, in a worker thread).  No psutil or NVML binding is needed.
- :class:`ResourceSampler` keeps a short ring of samples (``keep_s``, 10 minutes by default), one
  every ``every_s`` seconds while the app runs (:meth:`ResourceSampler.running`, entered by the app's
  lifespan).  Its clock and reader are injectable, so tests script both.
- :func:`server_memory` reads the newest ``server_memory`` run event per model: the loop's
  :class:`~kisystem.improve.resources.ServerWatch` stores one at the end of a run on an embedded
  server (at most once a minute per server); the dashboard does not touch the servers itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import subprocess
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from kisystem.store.times import iso
from kisystem.web.db import DashboardDb

log = logging.getLogger(__name__)

EVERY_S = 5.0
KEEP_S = 600.0
GPU_TIMEOUT_S = 2.0
SERVER_DAYS = 7  # server_memory events of runs started this recently
SERVERS_SHOWN = 50
NVIDIA_SMI_QUERY = ("--query-gpu=index,name,utilization.gpu,memory.used,memory.total",
                    "--format=csv,noheader,nounits")  # fmt: skip

# The window's runs by the ts index, then their events by run_id: never a scan of every event.
_SERVER_MEMORY = """
SELECT e.payload, e.ts, e.run_id FROM runs r CROSS JOIN run_events e ON e.run_id = r.run_id
WHERE r.ts >= ? AND e.kind = 'server_memory' ORDER BY e.id DESC
"""


@dataclass(frozen=True)
class CpuTimes:
    """The all-CPU line of /proc/stat, in clock ticks since boot."""

    busy: float
    total: float
    cores: int


@dataclass(frozen=True)
class MemoryUse:
    used_mb: float
    total_mb: float

    @property
    def percent(self) -> float:
        return 100.0 * self.used_mb / self.total_mb if self.total_mb else 0.0


@dataclass(frozen=True)
class GpuUse:
    index: int
    name: str
    util_percent: float | None
    used_mb: float | None
    total_mb: float | None

    @property
    def memory_percent(self) -> float | None:
        if self.used_mb is None or not self.total_mb:
            return None
        return 100.0 * self.used_mb / self.total_mb


@dataclass(frozen=True)
class GpuReading:
    """The GPUs found, or (``gpus`` empty) why there are none to show."""

    gpus: tuple[GpuUse, ...] = ()
    why_none: str = "no GPU"


class Reader(Protocol):
    def cpu_times(self) -> CpuTimes | None: ...
    def memory(self) -> MemoryUse | None: ...
    def gpus(self) -> GpuReading: ...


# -- parsing -----------------------------------------------------------------------------


def parse_stat(text: str) -> CpuTimes | None:
    """The ``cpu`` line: user nice system idle iowait irq softirq steal (guest time is inside user)."""
    total_line = next((line for line in text.splitlines() if line.startswith("cpu ")), None)
    if total_line is None:
        return None
    ticks = [float(v) for v in total_line.split()[1:9]]
    if len(ticks) < 4:
        return None
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0.0)
    cores = sum(1 for line in text.splitlines() if line.startswith("cpu") and line[3:4].isdigit())
    return CpuTimes(sum(ticks) - idle, sum(ticks), cores)


def cpu_percent(before: CpuTimes | None, after: CpuTimes | None) -> float | None:
    """Busy share of the whole machine between two readings; None without two, or when no tick passed."""
    if before is None or after is None or after.total <= before.total:
        return None
    return max(0.0, min(100.0, 100.0 * (after.busy - before.busy) / (after.total - before.total)))


def parse_meminfo(text: str) -> MemoryUse | None:
    """Used = MemTotal - MemAvailable (what the kernel could hand out without swapping), in MB."""
    kib = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("MemTotal", "MemAvailable") and value.split():
            kib[key] = float(value.split()[0])
    if "MemTotal" not in kib or "MemAvailable" not in kib:
        return None
    return MemoryUse((kib["MemTotal"] - kib["MemAvailable"]) / 1024, kib["MemTotal"] / 1024)


def parse_nvidia_smi(text: str) -> tuple[GpuUse, ...]:
    """``index, name, utilization.gpu, memory.used, memory.total`` lines (csv, noheader, nounits)."""
    found = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 5 or not fields[0].isdigit():
            continue
        util, used, total = (_number(f) for f in fields[2:])
        found.append(GpuUse(int(fields[0]), fields[1], util, used, total))
    return tuple(found)


def _number(text: str) -> float | None:
    """A figure, or None for what nvidia-smi writes when it has none (``[N/A]``, ``[Not Supported]``)."""
    try:
        return float(text)
    except ValueError:
        return None


# -- reading this machine ----------------------------------------------------------------

Run = Callable[..., subprocess.CompletedProcess[str]]


class ProcReader:
    """This machine's figures from /proc, and its GPUs from ``nvidia-smi`` where that is installed."""

    def __init__(self, proc: Path = Path("/proc"), nvidia_smi: str | None = None, run: Run = subprocess.run,
                 timeout_s: float = GPU_TIMEOUT_S) -> None:  # fmt: skip
        self.proc = proc
        self.nvidia_smi = nvidia_smi if nvidia_smi is not None else shutil.which("nvidia-smi")
        self.run = run
        self.timeout_s = timeout_s

    def cpu_times(self) -> CpuTimes | None:
        text = self._read("stat")
        return parse_stat(text) if text is not None else None

    def memory(self) -> MemoryUse | None:
        text = self._read("meminfo")
        return parse_meminfo(text) if text is not None else None

    def gpus(self) -> GpuReading:
        if not self.nvidia_smi:
            return GpuReading(why_none="no GPU (nvidia-smi not found)")
        try:
            done = self.run([self.nvidia_smi, *NVIDIA_SMI_QUERY], capture_output=True, text=True,
                            timeout=self.timeout_s, check=False)  # fmt: skip
        except (OSError, subprocess.SubprocessError) as err:
            return GpuReading(why_none=f"no GPU reading ({type(err).__name__}: {err})")
        gpus = parse_nvidia_smi(done.stdout) if done.returncode == 0 else ()
        if gpus:
            return GpuReading(gpus)
        said = (done.stdout.strip() or done.stderr.strip()).splitlines()
        return GpuReading(why_none=f"no GPU ({said[0][:200] if said else f'nvidia-smi exit {done.returncode}'})")

    def _read(self, name: str) -> str | None:
        try:
            return (self.proc / name).read_text()
        except OSError:
            return None


# -- the sampler ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    t: float  # unix seconds
    cpu_percent: float | None
    memory: MemoryUse | None
    gpu: GpuReading
    cores: int = 0


class ResourceSampler:
    """A ring of the last ``keep_s`` seconds of samples, one every ``every_s`` while :meth:`running`."""

    def __init__(self, reader: Reader | None = None, clock: Callable[[], float] = time.time,
                 every_s: float = EVERY_S, keep_s: float = KEEP_S) -> None:  # fmt: skip
        if every_s <= 0 or keep_s < every_s:
            raise ValueError(f"sampling every {every_s} s, keeping {keep_s} s: both positive, keep >= every")
        self.reader = reader if reader is not None else ProcReader()
        self.clock, self.every_s, self.keep_s = clock, every_s, keep_s
        self._samples: deque[Sample] = deque(maxlen=int(keep_s / every_s) + 2)
        self._last_cpu: CpuTimes | None = None
        self._lock = threading.Lock()

    def sample(self) -> Sample:
        """Read the machine once and keep the sample (the CPU share is since the previous reading)."""
        cpu = self.reader.cpu_times()
        found = Sample(self.clock(), cpu_percent(self._last_cpu, cpu), self.reader.memory(), self.reader.gpus(),
                       cpu.cores if cpu else 0)  # fmt: skip
        with self._lock:
            self._last_cpu = cpu or self._last_cpu
            self._samples.append(found)
            while self._samples and self._samples[0].t < found.t - self.keep_s:
                self._samples.popleft()
        return found

    def history(self) -> list[Sample]:
        with self._lock:
            return list(self._samples)

    async def run(self, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        """Sample forever (each read in a worker thread: nvidia-smi may take its timeout), ``every_s`` apart."""
        while True:
            try:
                await asyncio.to_thread(self.sample)
            except Exception as err:  # noqa: BLE001 - a failed reading must not end the sampling, nor the app
                log.warning("resource sample failed: %s: %s", type(err).__name__, err)
            await sleep(self.every_s)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Sampling in the background for the life of the block (the app's lifespan)."""
        task = asyncio.create_task(self.run(), name="kisystem-resource-sampler")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


# -- what the Overview shows -----------------------------------------------------------------


@dataclass(frozen=True)
class ServerMemory:
    """The newest ``server_memory`` event of one model's server."""

    model: str
    shared_with: tuple[str, ...]  # other models the same server held
    pid: int | None
    rss_mb: float | None
    peak_mb: float | None
    weights_mb: float | None
    kv_mb: float | None
    beyond_mb: float | None
    ts: str
    run_id: str


@dataclass(frozen=True)
class ResourcesPanel:
    latest: Sample | None
    chart: dict[str, Any]
    servers: list[ServerMemory]
    keep_s: float
    every_s: float
    server_days: int = SERVER_DAYS


def panel(sampler: ResourceSampler, db: DashboardDb, now: datetime) -> ResourcesPanel:
    history = sampler.history()
    return ResourcesPanel(history[-1] if history else None, resource_chart(history, sampler.keep_s),
                          server_memory(db, now), sampler.keep_s, sampler.every_s)


SERIES = (("cpu", "CPU"), ("memory", "memory"), ("gpu", "GPU"), ("vram", "GPU memory"))


def resource_chart(history: list[Sample], span_s: float = KEEP_S) -> dict[str, Any]:
    """Percent lines for uPlot (``static/resources.js``): ``{"x", "series": [{"key", "label", "values"}], ...}``.

    A None value is a gap; the GPU lines (their mean over the GPUs) only when a sample saw a GPU.  The
    x axis always spans ``span_s`` seconds up to the newest sample, however few samples there are yet.
    """
    values: dict[str, list[float | None]] = {
        "cpu": [s.cpu_percent for s in history],
        "memory": [s.memory.percent if s.memory else None for s in history],
    }
    if any(s.gpu.gpus for s in history):
        values["gpu"] = [_mean([g.util_percent for g in s.gpu.gpus]) for s in history]
        values["vram"] = [_mean([g.memory_percent for g in s.gpu.gpus]) for s in history]
    series = [{"key": key, "label": f"{label} %", "values": [_round(v) for v in values[key]]}
              for key, label in SERIES if key in values]  # fmt: skip
    return {"x": [s.t for s in history], "series": series, "y_label": "% of the machine", "y_max": 100,
            "x_span": span_s}


def server_memory(db: DashboardDb, now: datetime, days: int = SERVER_DAYS) -> list[ServerMemory]:
    """Per model, its server's newest ``server_memory`` event in runs of the last ``days`` days."""
    newest: dict[str, ServerMemory] = {}
    for row in db.rows(_SERVER_MEMORY, (iso(now - timedelta(days=days)),)):
        data = _payload(row["payload"])
        models = [str(m) for m in data.get("models") or () if m is not None]
        for model in models:
            if model not in newest and len(newest) < SERVERS_SHOWN:
                newest[model] = ServerMemory(
                    model, tuple(m for m in models if m != model), _int(data.get("pid")),
                    *(_float(data.get(k)) for k in ("rss_mb", "peak_mb", "weights_mb", "kv_mb", "beyond_mb")),
                    row["ts"], row["run_id"])  # fmt: skip
    return [newest[m] for m in sorted(newest)]


def _payload(text: str | None) -> dict[str, Any]:
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _mean(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None
