"""A one-model world for the integration tests: SmolLM2 served on a port of the test's own."""

from __future__ import annotations


def smollm2_inventory(port: int, name: str = "smollm2-135m", mode: str = "chat") -> str:
    """An inventory serving the embedded SmolLM2 as ``name`` on 127.0.0.1:``port`` for Python/General."""
    return f'''
[endpoints.tiny]
backend = "openai"
base_url = "http://127.0.0.1:{port}"

[[models]]
name = "{name}"
rank = 1
timeout_s = 60
endpoint = "tiny"
embedded = "smollm2-135m"
mode = "{mode}"

[routes."Python/General"]
start = "{name}"
'''
