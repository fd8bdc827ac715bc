"""GenerationGate: a machine-wide cap on concurrent local generations, on flock'ed slot files."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kisystem.config import load_config
from kisystem.errors import ConfigError
from kisystem.models.base import Endpoint, Generation, GenerationRequest, OnText, Timeouts
from kisystem.models.client import ModelClient
from kisystem.models.gate import GenerationGate, configured_slots, is_local, slots_for
from kisystem.models.inventory import parse_inventory

# A child process: waits for the go file, then holds the gate `rounds` times for `hold_s`,
# appending "PID enter T" / "PID exit T" (monotonic clock, shared by all processes) to a log.
HOLDER = """
import asyncio, os, sys, time
from pathlib import Path
from kisystem.models.gate import GenerationGate

locks, slots, log, go, rounds, hold_s = sys.argv[1:]
gate = GenerationGate(Path(locks), int(slots))

def note(what):
    with open(log, "a") as f:
        f.write(f"{os.getpid()} {what} {time.monotonic()}\\n")

async def main():
    print("ready", flush=True)
    while not os.path.exists(go):
        await asyncio.sleep(0.005)
    for _ in range(int(rounds)):
        async with gate.hold() as waited:
            note("enter")
            print(f"waited {waited}", flush=True)
            await asyncio.sleep(float(hold_s))
            note("exit")

asyncio.run(main())
"""


def spawn(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", HOLDER, *map(str, args)], stdout=subprocess.PIPE, text=True)


def run_holders(tmp_path: Path, slots: int, processes: int = 2, rounds: int = 3,
                hold_s: float = 0.1) -> list[tuple[float, float, str]]:
    """Start holders together; their (enter, exit, pid) intervals, sorted by enter."""
    log, go = tmp_path / "log", tmp_path / "go"
    procs = [spawn(tmp_path / "locks", slots, log, go, rounds, hold_s) for _ in range(processes)]
    for proc in procs:
        assert proc.stdout.readline().strip() == "ready"
    go.touch()
    for proc in procs:
        proc.communicate(timeout=30)
        assert proc.returncode == 0
    opened: dict[str, float] = {}
    intervals = []
    for line in log.read_text().splitlines():
        pid, what, at = line.split()
        if what == "enter":
            opened[pid] = float(at)
        else:
            intervals.append((opened.pop(pid), float(at), pid))
    assert len(intervals) == processes * rounds
    return sorted(intervals)


def overlaps(intervals: list[tuple[float, float, str]]) -> int:
    return sum(1 for (_, end, _), (start, _, _) in itertools.pairwise(intervals) if start < end)


# --- across processes ---------------------------------------------------------------


def test_one_slot_two_processes_never_overlap(tmp_path: Path) -> None:
    intervals = run_holders(tmp_path, slots=1)
    assert overlaps(intervals) == 0
    busy = sum(end - start for start, end, _ in intervals)
    assert intervals[-1][1] - intervals[0][0] >= busy


def test_back_to_back_holders_take_turns(tmp_path: Path) -> None:
    # Each holder asks again the moment it releases; the courtesy pause lets the other in.
    pids = [pid for _, _, pid in run_holders(tmp_path, slots=1, rounds=4, hold_s=0.05)]
    switches = sum(1 for a, b in itertools.pairwise(pids) if a != b)
    assert switches >= 4  # strict alternation would be 7; starving the other would be 1


def test_two_slots_let_two_processes_in_at_once(tmp_path: Path) -> None:
    gate = GenerationGate(tmp_path / "locks", 2)
    held = gate.try_acquire()
    assert held is not None
    try:
        proc = spawn(tmp_path / "locks", 2, tmp_path / "log", tmp_path / "go", 1, 0.0)
        (tmp_path / "go").touch()
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        waited = float(out.split()[-1])
        assert waited < 0.5  # the second slot was free while the test held the first
        second = gate.try_acquire()
        assert second is not None and gate.try_acquire() is None  # two taken: the third waits
        os.close(second)
    finally:
        os.close(held)


def test_a_killed_holder_frees_its_slot(tmp_path: Path) -> None:
    gate = GenerationGate(tmp_path / "locks", 1)
    proc = spawn(tmp_path / "locks", 1, tmp_path / "log", tmp_path / "go", 1, 60)
    assert proc.stdout.readline().strip() == "ready"
    (tmp_path / "go").touch()
    assert proc.stdout.readline().startswith("waited")  # it holds the slot now
    assert gate.try_acquire() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    fd = gate.try_acquire()
    assert fd is not None
    os.close(fd)


# --- within one process -------------------------------------------------------------


async def test_a_cancelled_waiter_leaks_no_slot(tmp_path: Path) -> None:
    gate = GenerationGate(tmp_path / "locks", 1)
    held = gate.try_acquire()
    entered = asyncio.Event()

    async def waiter() -> None:
        async with gate.hold():
            entered.set()

    task = asyncio.create_task(waiter())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not entered.is_set()
    os.close(held)
    fd = gate.try_acquire()
    assert fd is not None
    os.close(fd)


async def test_a_holder_cancelled_inside_releases(tmp_path: Path) -> None:
    gate = GenerationGate(tmp_path / "locks", 1)
    inside = asyncio.Event()

    async def holder() -> None:
        async with gate.hold():
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(holder())
    await asyncio.wait_for(inside.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with gate.hold() as waited:
        assert waited < 0.05


async def test_waiting_does_not_block_the_event_loop(tmp_path: Path) -> None:
    gate = GenerationGate(tmp_path / "locks", 1)
    held = gate.try_acquire()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    async def release_later() -> None:
        await asyncio.sleep(0.2)
        os.close(held)

    tick_task = asyncio.create_task(ticker())
    release = asyncio.create_task(release_later())
    async with gate.hold() as waited:
        assert waited >= 0.18
    tick_task.cancel()
    await release
    assert ticks >= 10


# --- slot counts and locality -------------------------------------------------------


def test_auto_slots_from_cores() -> None:
    assert [slots_for(c) for c in (1, 2, 3, 4, 16)] == [1, 1, 1, 2, 8]
    assert configured_slots(0, cores=4) == 2
    assert configured_slots(3, cores=2) == 3
    assert slots_for() >= 1
    with pytest.raises(ValueError):
        GenerationGate(Path("/nonexistent"), 0)


@pytest.mark.parametrize(
    ("url", "local"),
    [("http://127.0.0.1:18431", True), ("http://localhost:11434", True), ("http://[::1]:8080", True),
     ("http://127.0.1.1:80", True), ("http://10.0.0.5:11434", False), ("http://gpu-box:11434", False),
     ("https://api.example.com/v1", False)],
)
def test_is_local(url: str, local: bool) -> None:
    assert is_local(url) is local


def test_default_gate_lives_in_the_kisystem_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KISYSTEM_HOME", str(tmp_path))
    client = ModelClient(inventory_at("http://127.0.0.1:1"))
    assert client.gate is not None
    assert (client.gate.locks_dir, client.gate.slots) == (tmp_path / "locks", slots_for())
    assert ModelClient(inventory_at("http://127.0.0.1:1"), gate=None).gate is None


# --- ModelClient --------------------------------------------------------------------


def inventory_at(url: str):
    return parse_inventory({
        "endpoints": {"box": {"backend": "openai", "base_url": url}},
        "models": [{"name": "tiny", "rank": 1, "timeout_s": 5, "endpoint": "box"}],
        "routes": {},
    }, "gate test")  # fmt: skip


class FakeAdapter:
    """Times its own work, like the real adapters: total_s is the model's time only."""

    endpoint = Endpoint("box", "openai", "http://127.0.0.1:9")

    def __init__(self, work_s: float = 0.05) -> None:
        self.work_s = work_s
        self.calls = 0

    async def count_tokens(self, text: str) -> int | None:
        return None  # no tokenizer: the client estimates

    async def generate(self, request: GenerationRequest, timeouts: Timeouts, on_text: OnText | None = None) -> Generation:
        self.calls += 1
        started = time.monotonic()
        await asyncio.sleep(self.work_s)
        return Generation(text="ok", model=request.model, completion_tokens=1, total_s=time.monotonic() - started)

    async def aclose(self) -> None:
        pass


class TouchyGate:
    """A gate that fails the test if anyone asks it for a slot."""

    def hold(self):
        raise AssertionError("a remote endpoint must not be gated")


def client_with(url: str, gate) -> tuple[ModelClient, FakeAdapter]:
    client = ModelClient(inventory_at(url), gate=gate)
    adapter = FakeAdapter()
    client._adapters["box"] = adapter  # type: ignore[assignment]
    return client, adapter


async def test_remote_endpoints_are_not_gated() -> None:
    client, adapter = client_with("http://10.0.0.5:11434", TouchyGate())
    generation = await client.generate(GenerationRequest(model="tiny"))
    assert adapter.calls == 1 and "gate_wait_s" not in generation.backend_stats


async def test_local_wait_is_reported_and_not_model_time(tmp_path: Path) -> None:
    gate = GenerationGate(tmp_path / "locks", 1)
    client, adapter = client_with("http://127.0.0.1:18431", gate)
    held = gate.try_acquire()

    async def release_later() -> None:
        await asyncio.sleep(0.3)
        os.close(held)

    release = asyncio.create_task(release_later())
    generation = await client.generate(GenerationRequest(model="tiny"))
    await release
    assert adapter.calls == 1
    assert generation.backend_stats["gate_wait_s"] >= 0.25
    assert generation.total_s < 0.2  # the 0.05 s of "model work", not the wait


async def test_local_generations_take_turns(tmp_path: Path) -> None:
    client, adapter = client_with("http://127.0.0.1:18431", GenerationGate(tmp_path / "locks", 1))
    adapter.work_s = 0.1
    started = time.monotonic()
    results = await asyncio.gather(*(client.generate(GenerationRequest(model="tiny")) for _ in range(3)))
    assert time.monotonic() - started >= 0.3
    first, second, third = sorted(g.backend_stats["gate_wait_s"] for g in results)
    assert first < 0.05 and second >= 0.09 and third >= 0.19


# --- config -------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, 2, 64])
def test_config_accepts_0_to_64(value: int) -> None:
    env = {"KISYSTEM_MAX_CONCURRENT_GENERATIONS": str(value)}
    assert load_config(None, env=env).config.max_concurrent_generations == value


@pytest.mark.parametrize("value", [-1, 65])
def test_config_rejects_out_of_range(tmp_path: Path, value: int) -> None:
    path = tmp_path / "optimization_config.json"
    path.write_text(f'{{"max_concurrent_generations": {value}}}')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [f"max_concurrent_generations: {value} is out of range (allowed: int 0..64)"]


def test_config_default_is_auto() -> None:
    assert load_config(None, env={}).config.max_concurrent_generations == 0
