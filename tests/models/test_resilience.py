"""ResilientClient: a dead embedded server restarted once, a failing endpoint cooled down."""

from __future__ import annotations

import pytest

from kisystem.errors import (
    BackendCooledDown,
    BackendResponseError,
    BackendSilent,
    BackendUnreachable,
    ModelNotFound,
)
from kisystem.models.base import Generation, GenerationRequest
from kisystem.models.inventory import parse_inventory
from kisystem.models.resilience import RESTART_SPACING_S, ResilientClient

INVENTORY = parse_inventory({
    "endpoints": {"a": {"backend": "openai", "base_url": "http://127.0.0.1:9"},
                  "b": {"backend": "openai", "base_url": "http://127.0.0.1:10"}},
    "models": [{"name": "m1", "rank": 1, "timeout_s": 5, "endpoint": "a"},
               {"name": "m2", "rank": 2, "timeout_s": 5, "endpoint": "b"}],
    "routes": {"Python/General": {"start": "m1", "escalation": ["m2"]}},
}, "resilience test")


class Client:
    """Answers from a list per model: an exception is raised, a string returned."""

    inventory = INVENTORY

    def __init__(self, script: dict[str, list]) -> None:
        self.script = script
        self.calls: list[str] = []

    async def generate(self, request: GenerationRequest, on_text=None) -> Generation:
        self.calls.append(request.model)
        answer = self.script[request.model].pop(0)
        if isinstance(answer, Exception):
            raise answer
        return Generation(text=answer, model=request.model)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(model: str) -> GenerationRequest:
    return GenerationRequest(model=model, messages=[{"role": "user", "content": "hi"}])


def resilient(client: Client, clock: Clock, revive=None, cooldown_s: float = 60, failures: int = 2):
    return ResilientClient(client, cooldown_s=cooldown_s, failures_before_cooldown=failures, revive=revive,
                           clock=clock)


async def test_failures_in_a_row_cool_the_endpoint_down_until_the_cooldown_ends():
    clock, silent = Clock(), BackendSilent("m1: no first token within 30 s")
    client = Client({"m1": [silent, silent, "late answer"], "m2": ["ok"]})
    rc = resilient(client, clock)
    for _ in range(2):
        with pytest.raises(BackendSilent):
            await rc.generate(ask("m1"))
    with pytest.raises(BackendCooledDown, match=r"endpoint 'a' is cooling down for 60 s more after 2 failures"
                                               r".*no first token within 30 s"):
        await rc.generate(ask("m1"))
    assert client.calls == ["m1", "m1"]  # refused without a call
    assert (await rc.generate(ask("m2"))).text == "ok"  # other endpoints are not affected
    clock.now += 61
    assert (await rc.generate(ask("m1"))).text == "late answer"


async def test_a_success_resets_the_count_and_model_or_request_errors_do_not_count():
    clock = Clock()
    client = Client({"m1": [BackendUnreachable("down"), "ok", BackendUnreachable("down"),
                            ModelNotFound("m1", "http://x"), BackendResponseError("bad request", status=400), "ok"]})
    rc = resilient(client, clock)
    for expected in (BackendUnreachable, None, BackendUnreachable, ModelNotFound, BackendResponseError, None):
        if expected is None:
            assert (await rc.generate(ask("m1"))).text == "ok"
        else:
            with pytest.raises(expected):
                await rc.generate(ask("m1"))


async def test_a_dead_server_is_revived_once_and_the_request_retried():
    clock, revived = Clock(), []

    async def revive(model: str) -> bool:
        revived.append(model)
        return True

    client = Client({"m1": [BackendUnreachable("refused"), "after restart", BackendUnreachable("refused again")]})
    rc = resilient(client, clock, revive, failures=5)
    assert (await rc.generate(ask("m1"))).text == "after restart"
    clock.now += 10  # dies again at once: not restarted in a loop
    with pytest.raises(BackendUnreachable, match="refused again"):
        await rc.generate(ask("m1"))
    assert revived == ["m1"]
    client.script["m1"] = [BackendUnreachable("refused"), "later"]
    clock.now += RESTART_SPACING_S
    assert (await rc.generate(ask("m1"))).text == "later"
    assert revived == ["m1", "m1"]


async def test_a_server_that_is_alive_is_not_restarted_and_the_error_stands():
    async def revive(model: str) -> bool:
        return False  # healthy: the failure was something else

    client = Client({"m1": [BackendResponseError("stream cut", status=None)]})
    with pytest.raises(BackendResponseError, match="stream cut"):
        await resilient(client, Clock(), revive).generate(ask("m1"))
    assert client.calls == ["m1"]
