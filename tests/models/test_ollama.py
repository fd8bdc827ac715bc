"""OllamaAdapter against a real local HTTP server speaking Ollama's native API."""

from __future__ import annotations

import json
import time

import pytest
from werkzeug import Response

from kisystem.errors import BackendResponseError, BackendTimeout, BackendUnreachable, ModelNotFound
from kisystem.models.base import Endpoint, GenerationRequest, Timeouts
from kisystem.models.ollama import OllamaAdapter

MODEL = "qwen2.5-coder:7b"
FAST = Timeouts(connect=1.0, read=2.0, total=5.0)
CODE_PARTS = ["def add(a, b):\n", "    return", " a + b\n"]
FINAL = {
    "model": MODEL,
    "done": True,
    "done_reason": "stop",
    "total_duration": 2_500_000_000,
    "load_duration": 500_000_000,
    "prompt_eval_count": 31,
    "prompt_eval_duration": 250_000_000,
    "eval_count": 12,
    "eval_duration": 1_200_000_000,
}


def chat_lines(parts: list[str]) -> list[dict]:
    chunks = [{"model": MODEL, "message": {"role": "assistant", "content": p}, "done": False} for p in parts]
    return [*chunks, {**FINAL, "message": {"role": "assistant", "content": ""}}]


@pytest.fixture
async def adapter(httpserver, retry):
    endpoint = Endpoint(name="ollama-test", backend="ollama", base_url=httpserver.url_for("/"), retries=2)
    adapter = OllamaAdapter(endpoint, retry)
    yield adapter
    await adapter.aclose()


def chat_request(**kw) -> GenerationRequest:
    messages = [{"role": "user", "content": "Write add(a, b) in Python."}]
    return GenerationRequest(model=MODEL, messages=messages, **kw)


async def test_chat_streams_text_counts_and_stats(httpserver, adapter, wire):
    httpserver.expect_request("/api/chat", method="POST").respond_with_data(
        wire.ndjson(chat_lines(CODE_PARTS)), content_type="application/x-ndjson"
    )
    seen: list[str] = []
    gen = await adapter.generate(chat_request(), FAST, on_text=seen.append)
    assert gen.text == "def add(a, b):\n    return a + b\n"
    assert seen == CODE_PARTS
    assert (gen.prompt_tokens, gen.completion_tokens, gen.tokens) == (31, 12, 43)
    assert gen.finish_reason == "stop"
    assert gen.backend_stats["total_duration_s"] == pytest.approx(2.5)
    assert gen.backend_stats["load_duration_s"] == pytest.approx(0.5)
    assert gen.backend_stats["eval_tokens_per_s"] == pytest.approx(10.0)
    assert gen.first_token_s is not None and 0 < gen.first_token_s <= gen.total_s


async def test_chat_sends_options_and_keep_alive(httpserver, adapter, wire):
    httpserver.expect_request("/api/chat", method="POST").respond_with_data(wire.ndjson(chat_lines(["ok"])))
    request = chat_request(max_tokens=64, temperature=0.2, seed=7, stop=["```"], num_ctx=8192, keep_alive="-1")
    await adapter.generate(request, FAST)
    body = json.loads(httpserver.log[0][0].get_data())
    assert body["stream"] is True
    assert body["messages"] == request.messages
    assert body["options"] == {"temperature": 0.2, "num_predict": 64, "seed": 7, "stop": ["```"], "num_ctx": 8192}
    assert body["keep_alive"] == -1


async def test_completion_uses_raw_generate(httpserver, adapter, wire):
    lines = [{"response": "int main", "done": False}, {"response": "() {}", "done": False}, FINAL]
    httpserver.expect_request("/api/generate", method="POST").respond_with_data(wire.ndjson(lines))
    gen = await adapter.generate(GenerationRequest(model=MODEL, mode="completion", prompt="// C\n"), FAST)
    body = json.loads(httpserver.log[0][0].get_data())
    assert (body["raw"], body["prompt"], "keep_alive" in body) == (True, "// C\n", False)
    assert gen.text == "int main() {}"
    assert gen.completion_tokens == 12


async def test_chunks_reach_callback_while_streaming(httpserver, adapter, wire):
    parts = [wire.ndjson([line]) for line in chat_lines(["a", "b", "c"])]
    httpserver.expect_request("/api/chat").respond_with_response(wire.streaming(parts, gap=0.12))
    arrivals: list[float] = []
    start = time.monotonic()
    gen = await adapter.generate(chat_request(), FAST, on_text=lambda _: arrivals.append(time.monotonic() - start))
    assert gen.text == "abc"
    assert arrivals[1] - arrivals[0] >= 0.08  # chunks arrive one by one, not all at the end


async def test_error_line_after_200_raises(httpserver, adapter, wire):
    lines = [chat_lines(["partial"])[0], {"error": "model runner has unexpectedly stopped"}]
    httpserver.expect_request("/api/chat").respond_with_data(wire.ndjson(lines))
    with pytest.raises(BackendResponseError, match="unexpectedly stopped") as info:
        await adapter.generate(chat_request(), FAST)
    assert MODEL in str(info.value) and "/api/chat" in str(info.value)
    assert len(httpserver.log) == 1


async def test_stream_without_done_line_is_an_error(httpserver, adapter, wire):
    httpserver.expect_request("/api/chat").respond_with_data(wire.ndjson(chat_lines(["cut"])[:1]))
    with pytest.raises(BackendResponseError, match="without a final 'done' line"):
        await adapter.generate(chat_request(), FAST)


async def test_model_not_found_suggests_pull(httpserver, adapter):
    httpserver.expect_request("/api/chat").respond_with_json(
        {"error": f"model '{MODEL}' not found, try pulling it first"}, status=404
    )
    with pytest.raises(ModelNotFound) as info:
        await adapter.generate(chat_request(), FAST)
    assert (info.value.model, info.value.endpoint) == (MODEL, httpserver.url_for("/").rstrip("/"))
    assert f"ollama pull {MODEL}" in str(info.value)
    assert len(httpserver.log) == 1


async def test_http_500_is_clear_and_not_retried(httpserver, adapter, sleeps):
    httpserver.expect_request("/api/chat").respond_with_json({"error": "llama runner crashed"}, status=500)
    with pytest.raises(BackendResponseError) as info:
        await adapter.generate(chat_request(), FAST)
    assert info.value.status == 500
    assert "HTTP 500: llama runner crashed" in str(info.value) and MODEL in str(info.value)
    assert (len(httpserver.log), sleeps.delays) == (1, [])


async def test_400_is_not_retried(httpserver, adapter, sleeps):
    httpserver.expect_request("/api/chat").respond_with_json({"error": "invalid options"}, status=400)
    with pytest.raises(BackendResponseError, match="HTTP 400") as info:
        await adapter.generate(chat_request(), FAST)
    assert info.value.status == 400
    assert (len(httpserver.log), sleeps.delays) == (1, [])


async def test_429_with_retry_after_is_retried(httpserver, adapter, sleeps, wire):
    busy = Response('{"error": "server busy"}', status=429, headers={"Retry-After": "2"})
    httpserver.expect_oneshot_request("/api/chat").respond_with_response(busy)
    httpserver.expect_request("/api/chat").respond_with_data(wire.ndjson(chat_lines(["done"])))
    gen = await adapter.generate(chat_request(), FAST)
    assert gen.text == "done"
    assert (len(httpserver.log), sleeps.delays) == (2, [2.0])


async def test_hang_before_first_byte_hits_total_budget(httpserver, adapter, release, wire):
    httpserver.expect_request("/api/chat").respond_with_handler(wire.hanging(release))
    start = time.monotonic()
    with pytest.raises(BackendTimeout, match="total budget of 0.8 s") as info:
        await adapter.generate(chat_request(), Timeouts(connect=1.0, read=10.0, total=0.8))
    assert time.monotonic() - start < 1.8
    assert info.value.before_first_token is True


async def test_hang_mid_stream_hits_read_timeout_without_retry(httpserver, adapter, release, sleeps, wire):
    parts = [wire.ndjson([line]) for line in chat_lines(["first"])]
    httpserver.expect_request("/api/chat").respond_with_response(wire.streaming(parts, hang_after=1, release=release))
    start = time.monotonic()
    with pytest.raises(BackendTimeout, match="no data for 0.5 s") as info:
        await adapter.generate(chat_request(), Timeouts(connect=1.0, read=0.5, total=10.0))
    assert time.monotonic() - start < 1.5
    assert info.value.before_first_token is False
    assert (len(httpserver.log), sleeps.delays) == (1, [])


async def test_connection_refused_names_url(dead_url, retry, sleeps):
    adapter = OllamaAdapter(Endpoint("dead", "ollama", dead_url, retries=2), retry)
    with pytest.raises(BackendUnreachable) as info:
        await adapter.generate(chat_request(), FAST)
    assert f"{dead_url}/api/chat" in str(info.value) and MODEL in str(info.value)
    assert len(sleeps.delays) == 2  # connection errors are retried endpoint.retries times


async def test_list_running_and_version(httpserver, adapter):
    tags = {"models": [{"name": MODEL, "size": 1}, {"name": "llama3.2:3b", "size": 2}]}
    httpserver.expect_request("/api/tags", method="GET").respond_with_json(tags)
    httpserver.expect_request("/api/ps", method="GET").respond_with_json({"models": [{"name": MODEL}]})
    httpserver.expect_request("/api/version", method="GET").respond_with_json({"version": "0.5.7"})
    assert await adapter.list_models() == [MODEL, "llama3.2:3b"]
    assert await adapter.running_models() == [MODEL]
    assert await adapter.version() == "0.5.7"
