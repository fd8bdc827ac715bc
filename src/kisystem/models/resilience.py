"""Backends that fail mid-run: a dead embedded server is restarted once, and an endpoint
that keeps failing is cooled down (skipped for a while) so that tasks move on along their
chains instead of waiting on it.  The LiteLLM cooldown idea, per endpoint.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from kisystem.errors import (
    BackendCooledDown,
    BackendError,
    BackendResponseError,
    BackendUnreachable,
    ModelNotFound,
)
from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.models.client import ModelClient

# Restart a dead server only if its last restart is this long ago: a server that dies again
# at once is cooled down rather than restarted in a loop.
RESTART_SPACING_S = 600.0

Revive = Callable[[str], Awaitable[bool]]  # model name -> True once its dead server answers again


@dataclass
class _Health:
    failures: int = 0  # in a row
    cooled_until: float = 0.0
    last_error: str = ""


def counts_against_backend(err: BackendError) -> bool:
    """Dead, hanging or erroring servers count; a model the backend lacks or a client-side
    (4xx) rejection of one request does not."""
    if isinstance(err, BackendResponseError):
        return err.status is None or err.status >= 500
    return not isinstance(err, ModelNotFound)


class ResilientClient:
    """A ModelClient that restarts dead embedded servers and cools down failing endpoints.

    ``revive`` (the embedded fleet's) restarts a model's server when it is dead; None: never.
    """

    def __init__(self, client: ModelClient, *, cooldown_s: float, failures_before_cooldown: int,
                 revive: Revive | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client
        self.cooldown_s = cooldown_s
        self.failures_before_cooldown = failures_before_cooldown
        self.revive = revive
        self.clock = clock
        self._health: dict[str, _Health] = {}
        self._restarted_at: dict[str, float] = {}

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        endpoint = self.client.inventory.model(request.model).endpoint
        health = self._health.setdefault(endpoint, _Health())
        self._refuse_if_cooling(endpoint, health)
        try:
            generation = await self._generate_or_revive(request, on_text)
        except BackendError as err:
            if counts_against_backend(err):
                self._failed(health, err)
            raise
        health.failures = 0
        return generation

    async def _generate_or_revive(self, request: GenerationRequest, on_text: OnText | None) -> Generation:
        try:
            return await self.client.generate(request, on_text)
        except (BackendUnreachable, BackendResponseError):  # refused, or cut off mid-answer
            if not await self._restarted(request.model):
                raise
        return await self.client.generate(request, on_text)  # the server died and is back: once more

    async def _restarted(self, model: str) -> bool:
        now = self.clock()
        if self.revive is None or now - self._restarted_at.get(model, -RESTART_SPACING_S) < RESTART_SPACING_S:
            return False
        if not await self.revive(model):
            return False
        self._restarted_at[model] = now
        return True

    def _failed(self, health: _Health, err: BackendError) -> None:
        health.failures += 1
        health.last_error = str(err)
        if health.failures >= self.failures_before_cooldown and self.cooldown_s > 0:
            health.cooled_until = self.clock() + self.cooldown_s

    def _refuse_if_cooling(self, endpoint: str, health: _Health) -> None:
        left = health.cooled_until - self.clock()
        if left > 0:
            raise BackendCooledDown(
                f"endpoint {endpoint!r} is cooling down for {left:.0f} s more after {health.failures} failures "
                f"in a row (config backend_cooldown_s); last: {health.last_error}")

    async def aclose(self) -> None:
        await self.client.aclose()
