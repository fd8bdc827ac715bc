"""Which models a backend reports: the question behind ``kisystem models list`` and the dashboard's Models page.

An Ollama endpoint lists its loaded models at ``/api/ps``; an OpenAI-compatible one (llama.cpp, vLLM)
lists the models it serves at ``/v1/models``.
"""

from __future__ import annotations

from typing import Any

from kisystem.models.base import Endpoint


def loaded_url(endpoint: Endpoint) -> str:
    """Where ``endpoint`` lists its models."""
    return endpoint.base_url.rstrip("/") + ("/api/ps" if endpoint.backend == "ollama" else "/v1/models")


def served_names(body: Any) -> list[str]:
    """The model names in an ``/api/ps`` (``models``) or ``/v1/models`` (``data``) answer."""
    items = (body.get("models") or body.get("data") or []) if isinstance(body, dict) else []
    names = (m.get("name") or m.get("id") or m.get("model") for m in items if isinstance(m, dict))
    return [str(n) for n in names if n]
