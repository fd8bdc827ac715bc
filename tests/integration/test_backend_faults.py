"""Backends failing mid-run, with real llama.cpp servers: a killed server is restarted and
the run completes; a prompt measured by the real tokenizer."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from kisystem.config import OptimizationConfig
from kisystem.errors import PromptTooLong
from kisystem.loop.session import loop_session
from kisystem.loop.supervisor import LoopEvent
from kisystem.loop.taskspec import load_task
from kisystem.models.base import GenerationRequest
from kisystem.models.client import ModelClient
from kisystem.models.context import estimate_tokens
from kisystem.models.inventory import load_inventory
from kisystem.paths import Paths
from tests.integration.support import smollm2_inventory

pytestmark = pytest.mark.integration
PORT = 18541  # not the embedded profile's ports: a fleet serving those may be running
ADD = Path(__file__).parents[2] / "examples" / "judged" / "add.toml"


def one_model_home(tmp_path: Path, embedded_home: Path, **config) -> Paths:
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(embedded_home / "models")
    inventory = home / "inventory.toml"
    inventory.write_text(smollm2_inventory(PORT))
    path = home / "optimization_config.json"
    path.write_text(json.dumps({"inventory_file": str(inventory), **config}))
    return Paths.resolve(home, None, path)


def server_pids(home: Path) -> list[int]:
    """Pids of `kisystem models serve` children started for ``home``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(home).encode() in cmdline and b"serve" in cmdline:
            pids.append(int(proc.name))
    return pids


def kill_and_wait(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        try:  # reap it if it is our child, or it stays a zombie
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)


async def test_a_killed_embedded_server_is_restarted_and_the_run_completes(tmp_path, embedded_home):
    paths = one_model_home(tmp_path, embedded_home, max_optimization_iterations=2)
    config = OptimizationConfig.load(paths.config)
    inventory = load_inventory("embedded", paths.home / "inventory.toml")
    killed: list[int] = []
    warnings: list[str] = []

    def kill_before_the_first_generation(event: LoopEvent) -> None:
        if event.kind == "generate" and not killed:
            (pid,) = server_pids(paths.home)
            kill_and_wait(pid)
            killed.append(pid)

    async with loop_session(config, inventory, paths, on_event=kill_before_the_first_generation,
                            warn=warnings.append) as supervisor:
        result = await supervisor.run_task(load_task(ADD))
        (revived,) = server_pids(paths.home)
    assert killed and revived != killed[0]
    assert result.outcome in ("success", "failed", "exhausted"), result.reason  # completed, not an error
    assert result.model_attempts == {"smollm2-135m": result.iterations}  # every iteration got an answer
    assert any("restarted it" in w and "smollm2-135m" in w for w in warnings), warnings
    assert server_pids(paths.home) == []  # and the new server ends with the session


async def test_the_estimate_over_counts_the_real_tokenizer_and_a_huge_prompt_is_refused_unsent(
        embedded_inventory, embedded_fleet):
    texts = [ADD.read_text(), Path(__file__).read_text(), "Schreibe eine Funktion, die zwei Zahlen addiert."]
    async with ModelClient(embedded_inventory, gate=None) as client:
        for model in embedded_inventory.models:
            for text in texts:
                request = GenerationRequest(model=model, messages=[{"role": "user", "content": text}])
                size = await client.measure(request)
                assert size.exact and size.tokens <= estimate_tokens(request), (model, text[:30])
        huge = GenerationRequest(model="qwen2.5-coder-0.5b", messages=[{"role": "user", "content": "z" * 5 * 2**20}])
        started = time.monotonic()
        with pytest.raises(PromptTooLong, match=r"does not fit qwen2.5-coder-0.5b's context of 4096 tokens"):
            await client.generate(huge)
        assert time.monotonic() - started < 5  # refused before anything was sent
