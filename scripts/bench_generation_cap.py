#!/usr/bin/env python
"""Generation speed alone, and two models generating at once without and with the gate.

Serves the models on private ports (its own ``kisystem models serve`` child, so the
servers run with this checkout's settings and nothing running is reused), then:

  lone:     each model generates alone (one after the other), through the gate
  uncapped: both models are asked at once, without the gate
  capped:   both models are asked at once, through the machine-wide gate (its slot count
            from ``max_concurrent_generations``, 0: from the cores)

in ``--calls`` rounds of one generation per model and arm, the arms taking turns within
each round, so that other work on a shared machine falls on all arms alike.  The gate is
the real one: its waits include other kisystem processes' generations.

Per generation: tokens/s = completion_tokens / total_s (total_s is timed by the adapter,
so waiting at the gate is not in it).  Per arm: the median of those per model, and the
aggregate throughput, all completion tokens / the arm's wall time.

Usage: python scripts/bench_generation_cap.py [--models A B] [--calls 3] [--max-tokens 128]
                                              [--omp-wait-policy PASSIVE|ACTIVE] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kisystem.config import config_path_for, load_config
from kisystem.models import catalog
from kisystem.models.base import Generation, GenerationRequest
from kisystem.models.client import ModelClient
from kisystem.models.gate import GenerationGate
from kisystem.models.inventory import Inventory, load_inventory, parse_inventory
from kisystem.models.server import EmbeddedFleet
from kisystem.paths import Paths

TASK = ("Write a Python module number {i}: a binary search tree class with insert, delete, "
        "search and in-order traversal, each method with a docstring and an example.")


@dataclass
class Arm:
    name: str
    wall_s: float = 0.0
    runs: dict[str, list[Generation]] = field(default_factory=dict)

    def rates(self, model: str) -> list[float]:
        return [g.completion_tokens / g.total_s for g in self.runs[model] if g.total_s > 0]

    def median_rate(self, model: str) -> float:
        return statistics.median(self.rates(model))

    def median_wait(self, model: str) -> float:
        return statistics.median(g.backend_stats.get("gate_wait_s", 0.0) for g in self.runs[model])

    @property
    def tokens(self) -> int:
        return sum(g.completion_tokens for runs in self.runs.values() for g in runs)

    @property
    def model_s(self) -> float:
        return sum(g.total_s for runs in self.runs.values() for g in runs)

    @property
    def throughput(self) -> float:
        return self.tokens / self.wall_s


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def private_inventory(models: list[str], folder: Path) -> tuple[Inventory, Path]:
    """The models on fresh ports, and a config file pointing ``models serve`` at them."""
    profile = load_inventory("embedded").models
    data = {"endpoints": {}, "models": [], "routes": {}}
    for i, name in enumerate(models):
        catalog.embedded_model(name)  # fails on a name the catalog does not have
        data["endpoints"][f"e{i}"] = {"backend": "openai", "base_url": f"http://127.0.0.1:{free_port()}"}
        mode = profile[name].mode if name in profile else "chat"
        data["models"].append({"name": name, "rank": i + 1, "timeout_s": 600, "endpoint": f"e{i}",
                               "mode": mode, "embedded": name})
    toml = folder / "inventory.toml"
    toml.write_text(_toml(data))
    config = folder / "config.json"
    config.write_text(json.dumps({"inventory_file": str(toml)}))
    return parse_inventory(data, str(toml)), config


def _toml(data: dict) -> str:
    lines = []
    for name, ep in data["endpoints"].items():
        lines += [f"[endpoints.{name}]", *(f"{k} = {json.dumps(v)}" for k, v in ep.items()), ""]
    for model in data["models"]:
        lines += ["[[models]]", *(f"{k} = {json.dumps(v)}" for k, v in model.items()), ""]
    return "\n".join(lines)


def request(model: str, i: int, max_tokens: int) -> GenerationRequest:
    return GenerationRequest(model=model, max_tokens=max_tokens, seed=i,
                             messages=[{"role": "user", "content": TASK.format(i=i)}],
                             prompt=f'class SearchTree{i}:\n    """A binary search tree."""\n')


async def add(arm: Arm, client: ModelClient, models: list[str], i: int, max_tokens: int) -> None:
    """One generation per model, all at once; into ``arm``, with their wall time."""
    started = time.monotonic()
    generations = await asyncio.gather(*(client.generate(request(m, i, max_tokens)) for m in models))
    arm.wall_s += time.monotonic() - started
    for model, generation in zip(models, generations):
        arm.runs.setdefault(model, []).append(generation)


async def measure(inventory: Inventory, gate: GenerationGate, models: list[str], calls: int,
                  max_tokens: int) -> list[Arm]:
    """Round by round (lone, uncapped, capped), so that a busy machine disturbs every arm alike."""
    lone, uncapped, capped = Arm("lone"), Arm("uncapped"), Arm("capped")
    async with ModelClient(inventory, gate=gate) as gated, ModelClient(inventory, gate=None) as ungated:
        for model in models:  # warm-up: weights paged in, caches filled
            await gated.generate(request(model, 0, 16))
        for r in range(1, calls + 1):
            for model in models:
                await add(lone, gated, [model], r, max_tokens)
            await add(uncapped, ungated, models, 100 + r, max_tokens)
            await add(capped, gated, models, 200 + r, max_tokens)
    return [lone, uncapped, capped]


def report(arms: list[Arm], models: list[str], slots: int) -> dict:
    lone, uncapped, capped = arms
    return {
        "slots": slots, "cores": os.cpu_count(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "arms": {a.name: {"wall_s": round(a.wall_s, 2), "model_s": round(a.model_s, 2), "completion_tokens": a.tokens,
                          "aggregate_tokens_per_s": round(a.throughput, 2),
                          "models": {m: {"median_tokens_per_s": round(a.median_rate(m), 2),
                                         "tokens_per_s": [round(r, 2) for r in a.rates(m)],
                                         "median_gate_wait_s": round(a.median_wait(m), 2)} for m in models}}
                 for a in arms},
        "ratios": {
            **{f"capped/lone {m}": round(capped.median_rate(m) / lone.median_rate(m), 3) for m in models},
            **{f"uncapped/lone {m}": round(uncapped.median_rate(m) / lone.median_rate(m), 3) for m in models},
            "aggregate capped/uncapped": round(capped.throughput / uncapped.throughput, 3),
            "aggregate capped/lone": round(capped.throughput / lone.throughput, 3),
        },
    }


def print_report(result: dict, models: list[str]) -> None:
    print(f"cores {result['cores']}, gate slots {result['slots']}, OMP_WAIT_POLICY {result['omp_wait_policy']},"
          f" load average at the end {result['load_average']}")
    print(f"{'arm':<9} {'model':<22} {'median tok/s':>12} {'gate wait':>9}  per generation")
    for name, arm in result["arms"].items():
        for m in models:
            row = arm["models"][m]
            rates = ", ".join(f"{r:.1f}" for r in row["tokens_per_s"])
            print(f"{name:<9} {m:<22} {row['median_tokens_per_s']:>12.1f} {row['median_gate_wait_s']:>8.2f}s  {rates}")
        print(f"{name:<9} {'aggregate':<22} {arm['aggregate_tokens_per_s']:>12.1f}"
              f"            {arm['completion_tokens']} tokens in {arm['wall_s']:.1f} s"
              f" (model time {arm['model_s']:.1f} s, gate waits in the wall time)")
    for label, ratio in result["ratios"].items():
        print(f"{label:<40} {ratio:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs=2, default=["qwen2.5-coder-0.5b", "smollm2-135m"])
    parser.add_argument("--calls", type=int, default=3, help="generations per model and arm")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--omp-wait-policy", choices=["PASSIVE", "ACTIVE"],
                        help="for the servers (default: the server's own, PASSIVE)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.omp_wait_policy:
        os.environ["OMP_WAIT_POLICY"] = args.omp_wait_policy  # inherited by the serving child
    paths = Paths.resolve()
    config = load_config(config_path_for(paths)).config
    gate = GenerationGate.for_paths(paths, config.max_concurrent_generations)
    with tempfile.TemporaryDirectory() as folder:
        inventory, config_file = private_inventory(args.models, Path(folder))
        with EmbeddedFleet(inventory, paths.home, config_file=config_file, ready_timeout_s=300):
            arms = asyncio.run(measure(inventory, gate, args.models, args.calls, args.max_tokens))
    result = report(arms, args.models, gate.slots)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result, args.models)


if __name__ == "__main__":
    main()
