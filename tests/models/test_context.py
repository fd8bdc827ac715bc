"""Prompts measured before they are sent: the server's tokenizer, the estimate, the fit."""

from __future__ import annotations

import pytest

from kisystem.errors import PromptTooLong
from kisystem.models.base import Endpoint, GenerationRequest
from kisystem.models.client import ModelClient, timeouts_for
from kisystem.models.context import (
    MIN_ANSWER_TOKENS,
    PromptSize,
    TokenCounter,
    answer_budget,
    estimate_tokens,
)
from kisystem.models.inventory import parse_inventory
from kisystem.models.openai_compat import OpenAICompatAdapter

CHAT = GenerationRequest(model="tiny", messages=[{"role": "system", "content": "Be brief."},
                                                 {"role": "user", "content": "def add(a, b):\n    return a + b\n"}])


def adapter(url: str) -> OpenAICompatAdapter:
    return OpenAICompatAdapter(Endpoint("box", "openai", url.rstrip("/"), retries=0))


@pytest.mark.parametrize("answer, tokens", [({"tokens": [1, 2, 3, 4, 5]}, 5), ({"count": 7, "tokens": [1] * 7}, 7),
                                            ({"count": 7}, 7)])
async def test_the_servers_tokenizer_counts_llama_cpp_and_vllm_shapes(httpserver, answer, tokens):
    httpserver.expect_request("/tokenize", method="POST").respond_with_json(answer)
    size = await TokenCounter().measure(adapter(httpserver.url_for("/")), CHAT, context=4096)
    assert size == PromptSize(tokens + 2 * 8, exact=True)  # plus the template overhead of two messages


async def test_without_a_tokenizer_the_estimate_is_used_and_the_endpoint_asked_once(httpserver):
    httpserver.expect_request("/tokenize").respond_with_json({"error": "not found"}, status=404)
    counter, box = TokenCounter(), adapter(httpserver.url_for("/"))
    first = await counter.measure(box, CHAT, context=4096)
    second = await counter.measure(box, CHAT, context=4096)
    assert first == second == PromptSize(estimate_tokens(CHAT), exact=False)
    assert len(httpserver.log) == 1


async def test_a_prompt_far_over_the_context_is_estimated_without_asking(httpserver):
    huge = GenerationRequest(model="tiny", messages=[{"role": "user", "content": "x" * 5 * 2**20}])
    size = await TokenCounter().measure(adapter(httpserver.url_for("/")), huge, context=4096)
    assert size.tokens > 1_000_000 and not size.exact
    assert httpserver.log == []


def test_the_answer_budget_shrinks_to_the_room_left_or_refuses():
    assert answer_budget("m", PromptSize(1000, True), 4096, 512) == 512
    assert answer_budget("m", PromptSize(3800, True), 4096, 512) == 296
    assert answer_budget("m", PromptSize(3800, True), None, 512) == 512  # context unknown: not checked
    with pytest.raises(PromptTooLong, match=r"prompt of 4000 tokens \(estimated\) does not fit m's context of "
                                            r"4096 tokens"):
        answer_budget("m", PromptSize(4000, False), 4096, 512)
    assert 4096 - 4000 < MIN_ANSWER_TOKENS


async def test_the_client_refuses_a_prompt_that_cannot_fit_without_sending_it(httpserver):
    inventory = parse_inventory({
        "endpoints": {"box": {"backend": "openai", "base_url": httpserver.url_for("/").rstrip("/")}},
        "models": [{"name": "tiny", "rank": 1, "timeout_s": 5, "endpoint": "box", "context_tokens": 4096}],
        "routes": {"Python/General": {"start": "tiny"}},
    }, "context test")
    request = GenerationRequest(model="tiny", messages=[{"role": "user", "content": "y" * 5 * 2**20}])
    async with ModelClient(inventory, gate=None) as client:
        with pytest.raises(PromptTooLong, match="does not fit tiny's context of 4096 tokens"):
            await client.generate(request)
    assert httpserver.log == []


def test_the_first_token_budget_grows_with_the_prompt():
    spec = parse_inventory({"endpoints": {"e": {"backend": "openai", "base_url": "http://127.0.0.1:9"}},
                            "models": [{"name": "m", "rank": 1, "timeout_s": 300, "endpoint": "e"}]},
                           "t").model("m")
    assert timeouts_for(spec).first_token is None
    assert timeouts_for(spec, 30, 0).first_token == 30
    assert timeouts_for(spec, 30, 1000).first_token == 70  # 1000 tokens read at 25 tokens/s


def ollama_inventory(url: str, **model) -> object:
    return parse_inventory({
        "endpoints": {"box": {"backend": "ollama", "base_url": url.rstrip("/")}},
        "models": [{"name": "tiny", "rank": 1, "timeout_s": 5, "endpoint": "box", **model}],
        "routes": {"Python/General": {"start": "tiny"}},
    }, "ollama test")


def answered(wire) -> str:
    return wire.ndjson([{"model": "tiny", "message": {"role": "assistant", "content": "ok"}, "done": True,
                         "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 1}])


async def test_ollama_is_asked_for_the_models_context_and_the_callers_request_stays_as_asked(httpserver, wire):
    """num_ctx goes to Ollama, which serves what the prompt is checked against; the request (a cache key) keeps
    None, and the answer budget is the model's max_tokens as the loop asked, shrunk only to fit."""
    httpserver.expect_request("/api/chat", method="POST").respond_with_data(answered(wire))
    request = GenerationRequest(model="tiny", max_tokens=3000, messages=[{"role": "user", "content": "x" * 4000}])
    async with ModelClient(ollama_inventory(httpserver.url_for("/"), context_tokens=4096), gate=None) as client:
        await client.generate(request)
    options = httpserver.log[-1][0].get_json()["options"]
    # 4000 bytes estimated at 2 per token plus 8 for the message: 2008; 4096 - 2008 = 2088 of the 3000 asked
    assert options["num_ctx"] == 4096 and options["num_predict"] == 2088 == request.max_tokens
    assert request.num_ctx is None


async def test_ollama_without_a_known_context_is_sent_none(httpserver, wire):
    httpserver.expect_request("/api/chat", method="POST").respond_with_data(answered(wire))
    async with ModelClient(ollama_inventory(httpserver.url_for("/")), gate=None) as client:
        await client.generate(GenerationRequest(model="tiny", messages=[{"role": "user", "content": "x"}]))
    assert "num_ctx" not in httpserver.log[-1][0].get_json()["options"]
