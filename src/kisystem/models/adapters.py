"""Pick the adapter that speaks an endpoint's wire API."""

from __future__ import annotations

from collections.abc import Callable

from kisystem.errors import UsageError
from kisystem.models.base import Endpoint, ModelAdapter
from kisystem.models.http import RetryPolicy
from kisystem.models.ollama import OllamaAdapter
from kisystem.models.openai_compat import OpenAICompatAdapter

AdapterFactory = Callable[[Endpoint, RetryPolicy | None], ModelAdapter]

ADAPTERS: dict[str, AdapterFactory] = {
    "ollama": OllamaAdapter,
    "openai": OpenAICompatAdapter,
}


def make_adapter(endpoint: Endpoint, retry: RetryPolicy | None = None) -> ModelAdapter:
    """The adapter for ``endpoint.backend``; a UsageError names the known backends."""
    factory = ADAPTERS.get(endpoint.backend)
    if factory is None:
        known = ", ".join(sorted(ADAPTERS))
        raise UsageError(
            f"endpoint {endpoint.name!r} ({endpoint.base_url}): unknown backend "
            f"{endpoint.backend!r} (choose one of: {known})"
        )
    return factory(endpoint, retry)
