"""The Overview's resource panel: /proc and nvidia-smi parsed from scripted text, the sampler's ring on a fake
clock, its background loop in the app's lifespan, the newest server_memory event per model, and the panel."""

from __future__ import annotations

import asyncio
import html
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from kisystem.web.app import create_app
from kisystem.web.db import DashboardDb
from kisystem.web.resources import (
    CpuTimes,
    GpuReading,
    GpuUse,
    MemoryUse,
    ProcReader,
    ResourceSampler,
    cpu_percent,
    parse_meminfo,
    parse_nvidia_smi,
    parse_stat,
    resource_chart,
    server_memory,
)
from tests.web.support import FAST, NOW, SCRIPT, Seeded

# /proc/stat of a 2-core machine: user nice system idle iowait irq softirq steal guest guest_nice
STAT = """cpu  {busy} 0 0 {idle} {iowait} 0 0 0 0 0
cpu0 1 0 0 1 0 0 0 0 0 0
cpu1 1 0 0 1 0 0 0 0 0 0
intr 12345
"""
MEMINFO = "MemTotal:       16384000 kB\nMemFree:         1000000 kB\nMemAvailable:    4096000 kB\nBuffers: 1 kB\n"
# nvidia-smi --query-gpu=index,name,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits
SMI = "0, NVIDIA H200, 37, 71680, 143771\n1, NVIDIA H200, [N/A], 0, 143771\n"


class Scripted:
    """A reader whose figures the test sets; counts its readings."""

    def __init__(self, gpus: tuple[GpuUse, ...] = ()) -> None:
        self.busy, self.total, self.used_mb, self.calls = 0.0, 0.0, 1024.0, 0
        self.gpu = GpuReading(gpus) if gpus else GpuReading(why_none="no GPU (nvidia-smi not found)")

    def tick(self, busy: float, idle: float, used_mb: float | None = None) -> None:
        self.busy, self.total = self.busy + busy, self.total + busy + idle
        self.used_mb = used_mb if used_mb is not None else self.used_mb

    def cpu_times(self) -> CpuTimes:
        self.calls += 1
        return CpuTimes(self.busy, self.total, 4)

    def memory(self) -> MemoryUse:
        return MemoryUse(self.used_mb, 4096.0)

    def gpus(self) -> GpuReading:
        return self.gpu


class FakeClock:
    def __init__(self, t: float = NOW.timestamp()) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


# -- parsing ----------------------------------------------------------------------------------


def test_cpu_share_between_two_readings_counts_iowait_as_idle() -> None:
    before = parse_stat(STAT.format(busy=100, idle=800, iowait=100))
    after = parse_stat(STAT.format(busy=400, idle=1300, iowait=300))
    assert before == CpuTimes(busy=100.0, total=1000.0, cores=2)
    assert cpu_percent(before, after) == pytest.approx(100 * 300 / 1000)  # 300 busy of 1000 ticks
    assert cpu_percent(None, after) is None and cpu_percent(after, after) is None
    assert parse_stat("intr 1\n") is None


def test_memory_used_is_total_minus_available() -> None:
    mem = parse_meminfo(MEMINFO)
    assert mem == MemoryUse(used_mb=(16384000 - 4096000) / 1024, total_mb=16000.0)
    assert mem.percent == pytest.approx(75.0)
    assert parse_meminfo("MemTotal: 10 kB\n") is None  # a kernel without MemAvailable: unknown, not 100 %


def test_nvidia_smi_lines_with_missing_figures() -> None:
    first, second = parse_nvidia_smi(SMI + "garbage line\n")
    assert first == GpuUse(0, "NVIDIA H200", 37.0, 71680.0, 143771.0)
    assert first.memory_percent == pytest.approx(100 * 71680 / 143771)
    assert second.util_percent is None and second.memory_percent == 0.0


# -- reading a machine: /proc files and nvidia-smi, both scripted ---------------------------


def _proc(tmp_path: Path) -> Path:
    (tmp_path / "stat").write_text(STAT.format(busy=5, idle=90, iowait=5))
    (tmp_path / "meminfo").write_text(MEMINFO)
    return tmp_path


def test_proc_reader_reads_files_and_asks_nvidia_smi_briefly(tmp_path: Path) -> None:
    calls = []

    def run(cmd, **kw):
        calls.append((cmd, kw))
        return subprocess.CompletedProcess(cmd, 0, SMI, "")

    reader = ProcReader(_proc(tmp_path), nvidia_smi="/usr/bin/nvidia-smi", run=run, timeout_s=1.5)
    assert reader.cpu_times() == CpuTimes(5.0, 100.0, 2)
    assert reader.memory().total_mb == 16000.0
    assert [g.index for g in reader.gpus().gpus] == [0, 1]
    (cmd, kw), = calls
    assert cmd[0] == "/usr/bin/nvidia-smi" and "--format=csv,noheader,nounits" in cmd and kw["timeout"] == 1.5
    assert ProcReader(tmp_path / "missing", nvidia_smi="").cpu_times() is None


@pytest.mark.parametrize(("result", "said"), [
    (subprocess.CompletedProcess([], 9, "No devices were found\n", ""), "no GPU (No devices were found)"),
    (subprocess.TimeoutExpired("nvidia-smi", 2.0), "no GPU reading (TimeoutExpired"),
    (FileNotFoundError(2, "No such file"), "no GPU reading (FileNotFoundError"),
])  # fmt: skip
def test_no_gpu_says_why(tmp_path: Path, result, said: str) -> None:
    def run(cmd, **kw):
        if isinstance(result, BaseException):
            raise result
        return result

    reading = ProcReader(_proc(tmp_path), nvidia_smi="nvidia-smi", run=run).gpus()
    assert reading.gpus == () and reading.why_none.startswith(said)
    absent = ProcReader(_proc(tmp_path), nvidia_smi="", run=run).gpus()
    assert absent.why_none == "no GPU (nvidia-smi not found)"


# -- the sampler ---------------------------------------------------------------------------------


def test_sampler_ring_keeps_the_last_minutes_on_its_clock() -> None:
    reader, clock = Scripted(), FakeClock(1000.0)
    sampler = ResourceSampler(reader, clock, every_s=5.0, keep_s=20.0)
    first = sampler.sample()
    assert first.cpu_percent is None and first.t == 1000.0  # one reading: no share yet
    for i, busy in enumerate((25, 50, 75, 10, 90), 1):
        clock.t = 1000.0 + 5 * i
        reader.tick(busy, 100 - busy, used_mb=1024.0 * i)
        sampler.sample()
    history = sampler.history()
    assert [s.t for s in history] == [1005.0, 1010.0, 1015.0, 1020.0, 1025.0]  # 1000 is over 20 s old
    assert [s.cpu_percent for s in history] == [25.0, 50.0, 75.0, 10.0, 90.0]
    assert history[-1].memory.percent == 125.0 and history[-1].cores == 4
    chart = resource_chart(history)
    assert chart["x"] == [1005.0, 1010.0, 1015.0, 1020.0, 1025.0]
    assert [(s["key"], s["values"]) for s in chart["series"]] == [
        ("cpu", [25.0, 50.0, 75.0, 10.0, 90.0]), ("memory", [25.0, 50.0, 75.0, 100.0, 125.0])]
    with pytest.raises(ValueError):
        ResourceSampler(reader, clock, every_s=10.0, keep_s=5.0)


def test_gpu_lines_are_the_mean_over_gpus() -> None:
    gpus = (GpuUse(0, "a", 40.0, 500.0, 1000.0), GpuUse(1, "b", None, 250.0, 1000.0))
    sampler = ResourceSampler(Scripted(gpus), FakeClock())
    sampler.sample()
    chart = resource_chart(sampler.history())
    assert {s["key"]: s["values"] for s in chart["series"]} == {
        "cpu": [None], "memory": [25.0], "gpu": [40.0], "vram": [37.5]}


async def test_the_loop_samples_every_interval_and_survives_a_failed_reading() -> None:
    reader = Scripted()
    sampler = ResourceSampler(reader, FakeClock(), every_s=7.0, keep_s=70.0)
    broken = {"n": 0}
    real = reader.memory

    def memory():
        broken["n"] += 1
        if broken["n"] == 2:
            raise OSError("boom")
        return real()

    reader.memory = memory  # type: ignore[method-assign]
    slept = []

    async def sleep(s: float) -> None:
        slept.append(s)
        if len(slept) == 4:
            raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await sampler.run(sleep)
    assert slept == [7.0] * 4 and reader.calls == 4 and len(sampler.history()) == 3  # the second one failed


# -- server memory from the run events -----------------------------------------------------------


def _server(pid: int, models: list[str], rss: float, peak: float) -> dict:
    return {"pid": pid, "models": models, "peak_mb": peak, "rss_mb": rss, "weights_mb": 900.0, "kv_mb": 100.0,
            "beyond_mb": peak - 1000.0}


def _measure(seeded: Seeded) -> None:
    store, ids = seeded.db.store, seeded.ids
    store.append_event(ids["old"], "server_memory", _server(11, ["big"], 1500.0, 1600.0))  # three days back
    store.append_event(ids["solved"], "server_memory", _server(22, ["big"], 1700.0, 1800.0))  # newer: shown
    store.append_event(ids["failed"], "server_memory", _server(33, ["small", SCRIPT], 2048.0, 2560.0))


def test_newest_server_memory_per_model(seeded: Seeded) -> None:
    _measure(seeded)
    db = DashboardDb.open(seeded.path)
    try:
        found = {m.model: m for m in server_memory(db, NOW)}
        assert set(found) == {"big", "small", SCRIPT}
        assert (found["big"].pid, found["big"].rss_mb, found["big"].beyond_mb) == (22, 1700.0, 800.0)
        assert found["big"].run_id == seeded.ids["solved"]
        assert found["small"].shared_with == (SCRIPT,) and found[SCRIPT].shared_with == ("small",)
        old_only = {m.model: m.pid for m in server_memory(db, NOW + timedelta(days=6), days=5)}
        assert old_only == {}  # the old run started 3 days before T0: outside the last 5 days of T0 + 6
        assert {m.model: m.pid for m in server_memory(db, NOW, days=4)}["big"] == 22
    finally:
        db.close()


# -- the panel on the Overview ---------------------------------------------------------------------


@contextmanager
def overview(path: Path, sampler: ResourceSampler) -> Iterator[TestClient]:
    """The app without its lifespan (no background sampling): the test samples by hand."""
    db = DashboardDb.open(path)
    try:
        yield TestClient(create_app(db, clock=lambda: NOW, stream=FAST, sampler=sampler))
    finally:
        db.close()


def _cells(page: str, css_class: str) -> list[list[str]]:
    table = re.search(rf'<table class="{css_class}">(.*?)</table>', page, re.DOTALL)
    assert table, css_class
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.DOTALL)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.DOTALL)]
            for r in rows if "<td" in r]


def test_panel_with_gpus_and_server_memory(seeded: Seeded) -> None:
    _measure(seeded)
    reader, clock = Scripted(parse_nvidia_smi(SMI)), FakeClock()
    sampler = ResourceSampler(reader, clock)
    with overview(seeded.path, sampler) as c:
        assert "No sample yet" in c.get("/").text
        sampler.sample()
        clock.t += 5
        reader.tick(30, 70, used_mb=3072.0)
        sampler.sample()
        page = c.get("/").text
    rows = {r[0]: r[1:] for r in _cells(page, "resources")}
    assert rows["CPU"] == ["30%", "4 cores"] and rows["Memory"] == ["75%", "3.0 GB of 4.0 GB"]
    assert rows["GPU 0 NVIDIA H200"] == ["37%", "memory 70.0 GB of 140.4 GB (50%)"]
    assert rows["GPU 1 NVIDIA H200"] == ["-", "memory 0 MB of 140.4 GB (0%)"]
    chart = json.loads(re.search(r'id="resource-chart-data">(.*?)</script>', page, re.DOTALL).group(1))
    assert chart["x"] == [NOW.timestamp(), NOW.timestamp() + 5] and (chart["y_max"], chart["x_span"]) == (100, 600.0)
    assert {s["key"]: s["values"] for s in chart["series"]} == {
        "cpu": [None, 30.0], "memory": [25.0, 75.0], "gpu": [37.0, 37.0], "vram": [24.9, 24.9]}
    servers = {r[0]: r for r in _cells(page, "server-memory")}
    assert servers["big"][1:5] == ["1.7 GB", "1.8 GB", "1000 MB", "800 MB"] and servers["big"][6] == "pid 22"
    assert servers["small"][6] == f"pid 33 (with {SCRIPT})"
    assert SCRIPT not in page and html.escape(SCRIPT, quote=False) in page  # a model name stays text
    assert 'hx-select="#resources"' in page and 'src="/static/resources.js"' in page


def test_panel_without_gpu_says_so(seeded: Seeded) -> None:
    sampler = ResourceSampler(Scripted(), FakeClock())
    sampler.sample()
    with overview(seeded.path, sampler) as c:
        page = c.get("/").text
        script = c.get("/static/resources.js")
    rows = {r[0]: r[1:] for r in _cells(page, "resources")}
    assert rows["GPU"] == ["no GPU", "no GPU (nvidia-smi not found)"] and rows["CPU"][0] == "measuring…"
    chart = json.loads(re.search(r'id="resource-chart-data">(.*?)</script>', page, re.DOTALL).group(1))
    assert [s["key"] for s in chart["series"]] == ["cpu", "memory"]
    assert "No model server measured in the last 7 days" in page
    assert script.status_code == 200 and "data-resource-chart" in script.text


def test_lifespan_samples_in_the_background_and_stops(seeded: Seeded) -> None:
    reader = Scripted()
    sampler = ResourceSampler(reader, time.time, every_s=0.02, keep_s=60.0)
    db = DashboardDb.open(seeded.path)
    try:
        with TestClient(create_app(db, clock=lambda: NOW, stream=FAST, sampler=sampler)) as c:
            deadline = time.monotonic() + 5
            while reader.calls < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert reader.calls >= 3
            assert "No sample yet" not in c.get("/").text
        stopped = reader.calls
        time.sleep(0.2)
        assert reader.calls == stopped  # the lifespan's end cancelled the loop
    finally:
        db.close()
