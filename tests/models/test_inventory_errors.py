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
    (inventory(model={**MODEL, "max_tokens": 0}), "inv.toml: model #1: 'm': max_tokens 0 is not an integer 16..32768"),
    (inventory(model={**MODEL, "max_tokens": "800"}),
     "inv.toml: model #1: 'm': max_tokens '800' is not an integer 16..32768"),
    (inventory(model={**MODEL, "max_tokens": 65536}),
     "inv.toml: model #1: 'm': max_tokens 65536 is not an integer 16..32768"),
    (inventory(model={**MODEL, "context_tokens": 100}),
     "inv.toml: model #1: 'm': context_tokens 100 is not an integer 256..16777216"),
])
def test_each_error_names_the_file_the_entry_and_the_key(data, expected):
    with pytest.raises(InventoryError) as caught:
        parse_inventory(data, "inv.toml")
    assert str(caught.value).startswith(expected)


def test_a_models_max_tokens_is_read_and_absent_is_the_loops_default():
    parsed = parse_inventory(inventory(model={**MODEL, "max_tokens": 800}), "inv.toml")
    assert parsed.model("m").max_tokens == 800
    assert parse_inventory(inventory(), "inv.toml").model("m").max_tokens is None


def test_every_error_is_one_line():
    with pytest.raises(InventoryError) as caught:
        parse_inventory(inventory(model={**MODEL, "max_tokens": True}), "inv.toml")
    assert "\n" not in str(caught.value) and "max_tokens True is not an integer" in str(caught.value)
