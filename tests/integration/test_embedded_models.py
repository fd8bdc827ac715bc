"""Real completions from the real embedded models, through the loop's own HTTP client."""

from __future__ import annotations

import ast

import pytest

from kisystem.loop.extract import extract_files
from kisystem.models import catalog
from kisystem.models.base import GenerationRequest
from kisystem.models.client import ModelClient
from tests.integration.conftest import served_names

pytestmark = pytest.mark.integration


def test_pulled_weights_verify(embedded_home):
    for name in served_names():
        model = catalog.embedded_model(name)
        path = catalog.model_path(embedded_home / "models", name)
        assert catalog.sha256_of(path) == model.sha256


async def test_smollm2_chat_answers(embedded_fleet, embedded_inventory):
    request = GenerationRequest(model="smollm2-135m", max_tokens=48,
                                messages=[{"role": "user", "content": "Write a Python function that adds two numbers."}])
    chunks: list[str] = []
    async with ModelClient(embedded_inventory) as client:
        result = await client.generate(request, on_text=chunks.append)
    assert result.completion_tokens > 0
    assert result.text.strip() and "".join(chunks) == result.text
    assert result.first_token_s is not None and result.first_token_s < result.total_s


async def test_qwen_coder_writes_a_working_function(embedded_fleet, embedded_inventory):
    request = GenerationRequest(model="qwen2.5-coder-0.5b", max_tokens=96, messages=[
        {"role": "user", "content": "Write a Python function add(a, b) that returns the sum. Only the code."}])
    async with ModelClient(embedded_inventory) as client:
        result = await client.generate(request)
    tree = ast.parse(extract_files(result.text, "solution.py")["solution.py"])  # parsed, never run here
    (add,) = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "add"]
    assert [a.arg for a in add.args.args] == ["a", "b"]


async def test_speed_benchmark_measures_each_model(embedded_fleet, embedded_inventory):
    from kisystem.bench.models import measure

    (speed,) = await measure(embedded_inventory, ["smollm2-135m"], calls=2)
    assert speed.calls == 2
    assert 0 < speed.first_token_min_ms <= speed.first_token_ms <= speed.first_token_max_ms
    assert speed.tokens_per_s > 0
