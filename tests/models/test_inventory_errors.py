"""Inventory errors name the file, the entry and the missing or bad key with what is allowed."""

from __future__ import annotations

import pytest

from kisystem.models.inventory import InventoryError, parse_inventory

ENDPOINT = {"backend": "openai", "base_url": "http://127.0.0.1:9"}
MODEL = {"name": "m", "rank": 1, "timeout_s": 30, "endpoint": "e"}


def inventory(endpoint=None, model=None, route=None):
    return {"endpoints": {"e": endpoint or ENDPOINT}, "models": [model or MODEL],
            "routes": {"Python/General": route or {"start": "m"}}}


@pytest.mark.parametrize("data, expected", [
    (inventory(endpoint={"base_url": "http://x"}),
     "inv.toml: endpoint 'e': missing required key 'backend' (one of ollama, openai)"),
    (inventory(endpoint={"backend": "vllm", "base_url": "http://x"}),
     "inv.toml: endpoint 'e': backend 'vllm' not one of ollama, openai"),
    (inventory(model={**MODEL, "rank": "high"}), "inv.toml: model #1: invalid literal for int()"),
    (inventory(model={k: v for k, v in MODEL.items() if k != "timeout_s"}),
     "inv.toml: model #1: missing required key 'timeout_s' (seconds)"),
    (inventory(route={"escalation": ["m"]}), "inv.toml: route 'Python/General': missing required key 'start'"),
    (inventory(model={**MODEL, "stoploss": 0}), "inv.toml: model #1: 'm': stoploss 0 is not an integer 1..5"),
])
def test_each_error_names_the_file_the_entry_and_the_key(data, expected):
    with pytest.raises(InventoryError) as caught:
        parse_inventory(data, "inv.toml")
    assert str(caught.value).startswith(expected)
