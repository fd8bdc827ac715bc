"""`bench models`: load time, first-token latency and generation speed of each model."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from kisystem.models.base import Generation, GenerationRequest
from kisystem.models.client import ModelClient
from kisystem.models.inventory import Inventory


@dataclass(frozen=True)
class ModelSpeed:
    model: str
    calls: int
    first_token_ms: float  # median over the calls after a warm-up call
    first_token_min_ms: float
    first_token_max_ms: float
    tokens_per_s: float  # median generation speed after the first token


def _request(model: str, i: int) -> GenerationRequest:
    return GenerationRequest(
        model=model, max_tokens=64, seed=i,
        messages=[{"role": "user", "content": f"Write a Python function number {i} that reverses a string."}],
        prompt=f'def reverse_{i}(s: str) -> str:\n    """Return s reversed."""\n')


def _rate(g: Generation) -> float:
    streaming = g.total_s - (g.first_token_s or 0.0)
    return g.completion_tokens / streaming if streaming > 0 else 0.0


async def measure(inventory: Inventory, models: list[str], calls: int) -> list[ModelSpeed]:
    """One warm-up call per model, then ``calls`` measured calls with different prompts."""
    speeds = []
    async with ModelClient(inventory) as client:
        for model in models:
            await client.generate(_request(model, 0))
            runs = [await client.generate(_request(model, i)) for i in range(1, calls + 1)]
            firsts = [1000 * (g.first_token_s or g.total_s) for g in runs]
            speeds.append(ModelSpeed(model, calls, statistics.median(firsts), min(firsts), max(firsts),
                                     statistics.median(_rate(g) for g in runs)))
    return speeds
