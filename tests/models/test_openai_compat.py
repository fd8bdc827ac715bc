"""OpenAICompatAdapter against a real local HTTP server speaking the OpenAI wire API."""

from __future__ import annotations

import json
import time

import pytest
from werkzeug import Response

from kisystem.errors import BackendResponseError, BackendTimeout, BackendUnreachable, ModelNotFound
from kisystem.models.base import Endpoint, GenerationRequest, Timeouts
from kisystem.models.openai_compat import OpenAICompatAdapter

MODEL = "Qwen/Qwen2.5-Coder-7B-Instruct"
FAST = Timeouts(connect=1.0, read=2.0, total=5.0)
CODE_PARTS = ["__global__ void add(", "float* a, float* b)", " { a[0] += b[0]; }"]
USAGE = {"prompt_tokens": 40, "completion_tokens": 17, "total_tokens": 57}
TIMINGS = {"prompt_n": 40, "prompt_ms": 80.5, "predicted_n": 17, "predicted_ms": 340.0, "predicted_per_second": 50.0}


def chat_chunks(parts: list[str], usage: dict | None = USAGE) -> list[dict]:
    chunks = [{"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": p}}]} for p in parts]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if usage:
        chunks.append({"choices": [], "usage": usage})
    return chunks


@pytest.fixture
async def adapter(httpserver, retry):
    endpoint = Endpoint("vllm-test", "openai", httpserver.url_for("/"), api_key="sk-local", retries=2)
    adapter = OpenAICompatAdapter(endpoint, retry)
    yield adapter
    await adapter.aclose()


def chat_request(**kw) -> GenerationRequest:
    messages = [{"role": "user", "content": "Write a CUDA add kernel."}]
    return GenerationRequest(model=MODEL, messages=messages, **kw)


def sse_ok(httpserver, wire, path: str, chunks: list[dict]) -> None:
    httpserver.expect_request(path, method="POST").respond_with_data(wire.sse(chunks), content_type="text/event-stream")


async def test_chat_streams_text_usage_and_auth(httpserver, adapter, wire):
    sse_ok(httpserver, wire, "/v1/chat/completions", chat_chunks(CODE_PARTS))
    seen: list[str] = []
    gen = await adapter.generate(chat_request(), FAST, on_text=seen.append)
    assert gen.text == "".join(CODE_PARTS)
    assert seen == CODE_PARTS
    assert (gen.prompt_tokens, gen.completion_tokens, gen.finish_reason) == (40, 17, "stop")
    assert gen.first_token_s is not None and 0 < gen.first_token_s <= gen.total_s
    request = httpserver.log[0][0]
    assert request.headers["Authorization"] == "Bearer sk-local"


async def test_chat_sends_sampling_fields(httpserver, adapter, wire):
    sse_ok(httpserver, wire, "/v1/chat/completions", chat_chunks(["ok"]))
    await adapter.generate(chat_request(max_tokens=99, temperature=0.3, seed=11, stop=["</code>"]), FAST)
    body = json.loads(httpserver.log[0][0].get_data())
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["max_tokens"], body["temperature"], body["seed"], body["stop"]) == (99, 0.3, 11, ["</code>"])
    assert body["messages"][0]["content"] == "Write a CUDA add kernel."


async def test_completion_reads_text_and_llamacpp_timings(httpserver, adapter, wire):
    chunks = [
        {"choices": [{"index": 0, "text": "int x"}]},
        {"choices": [{"index": 0, "text": " = 42;", "finish_reason": "length"}], "timings": TIMINGS},
    ]
    sse_ok(httpserver, wire, "/v1/completions", chunks)
    gen = await adapter.generate(GenerationRequest(model=MODEL, mode="completion", prompt="// C\n"), FAST)
    assert json.loads(httpserver.log[0][0].get_data())["prompt"] == "// C\n"
    assert (gen.text, gen.finish_reason) == ("int x = 42;", "length")
    assert (gen.prompt_tokens, gen.completion_tokens) == (40, 17)  # from timings when usage is absent
    assert gen.backend_stats == {k: float(v) for k, v in TIMINGS.items()}


async def test_base_url_with_v1_suffix_works(httpserver, retry, wire):
    sse_ok(httpserver, wire, "/v1/chat/completions", chat_chunks(["hi"]))
    adapter = OpenAICompatAdapter(Endpoint("lmstudio", "openai", httpserver.url_for("/v1/")), retry)
    assert (await adapter.generate(chat_request(), FAST)).text == "hi"
    assert "Authorization" not in httpserver.log[0][0].headers
    await adapter.aclose()


async def test_chunks_reach_callback_while_streaming(httpserver, adapter, wire):
    parts = [wire.sse([c], done=False) for c in chat_chunks(["x", "y", "z"])] + ["data: [DONE]\n\n"]
    response = wire.streaming(parts, gap=0.12, content_type="text/event-stream")
    httpserver.expect_request("/v1/chat/completions").respond_with_response(response)
    arrivals: list[float] = []
    start = time.monotonic()
    gen = await adapter.generate(chat_request(), FAST, on_text=lambda _: arrivals.append(time.monotonic() - start))
    assert gen.text == "xyz"
    assert arrivals[1] - arrivals[0] >= 0.08


async def test_error_event_mid_stream_raises(httpserver, adapter, wire):
    chunks = [chat_chunks(["partial"])[0], {"error": {"message": "CUDA out of memory", "type": "server_error"}}]
    sse_ok(httpserver, wire, "/v1/chat/completions", chunks)
    with pytest.raises(BackendResponseError, match="CUDA out of memory") as info:
        await adapter.generate(chat_request(), FAST)
    assert "/v1/chat/completions" in str(info.value) and MODEL in str(info.value)
    assert len(httpserver.log) == 1


async def test_stream_cut_before_done_is_an_error(httpserver, adapter, wire):
    httpserver.expect_request("/v1/chat/completions").respond_with_data(wire.sse(chat_chunks(["cut"])[:1], done=False))
    with pytest.raises(BackendResponseError, match=r"ended before \[DONE\]"):
        await adapter.generate(chat_request(), FAST)


async def test_model_not_found(httpserver, adapter):
    body = {"object": "error", "message": f"The model `{MODEL}` does not exist.", "type": "NotFoundError", "code": 404}
    httpserver.expect_request("/v1/chat/completions").respond_with_json(body, status=404)
    with pytest.raises(ModelNotFound, match="does not exist") as info:
        await adapter.generate(chat_request(), FAST)
    assert (info.value.model, len(httpserver.log)) == (MODEL, 1)


async def test_plain_404_is_a_response_error_not_model_not_found(httpserver, adapter):
    httpserver.expect_request("/v1/chat/completions").respond_with_data("File Not Here", status=404)
    with pytest.raises(BackendResponseError, match="HTTP 404: File Not Here") as info:
        await adapter.generate(chat_request(), FAST)
    assert not isinstance(info.value, ModelNotFound)


async def test_http_500_is_clear_and_not_retried(httpserver, adapter, sleeps):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"error": {"message": "engine dead", "type": "server_error"}}, status=500
    )
    with pytest.raises(BackendResponseError) as info:
        await adapter.generate(chat_request(), FAST)
    assert info.value.status == 500 and "HTTP 500: engine dead" in str(info.value)
    assert (len(httpserver.log), sleeps.delays) == (1, [])


async def test_400_is_not_retried(httpserver, adapter, sleeps):
    httpserver.expect_request("/v1/chat/completions").respond_with_json(
        {"error": {"message": "max_tokens too large"}}, status=400
    )
    with pytest.raises(BackendResponseError, match="max_tokens too large") as info:
        await adapter.generate(chat_request(), FAST)
    assert info.value.status == 400
    assert (len(httpserver.log), sleeps.delays) == (1, [])


async def test_429_with_retry_after_is_retried(httpserver, adapter, sleeps, wire):
    busy = Response('{"error": {"message": "slow down"}}', status=429, headers={"Retry-After": "3"})
    httpserver.expect_oneshot_request("/v1/chat/completions").respond_with_response(busy)
    sse_ok(httpserver, wire, "/v1/chat/completions", chat_chunks(["after wait"]))
    gen = await adapter.generate(chat_request(), FAST)
    assert gen.text == "after wait"
    assert (len(httpserver.log), sleeps.delays) == (2, [3.0])


async def test_hang_before_first_byte_hits_total_budget(httpserver, adapter, release, wire):
    httpserver.expect_request("/v1/chat/completions").respond_with_handler(wire.hanging(release))
    start = time.monotonic()
    with pytest.raises(BackendTimeout, match="total budget of 0.8 s") as info:
        await adapter.generate(chat_request(), Timeouts(connect=1.0, read=10.0, total=0.8))
    assert time.monotonic() - start < 1.8
    assert info.value.before_first_token is True


async def test_hang_mid_stream_hits_read_timeout_without_retry(httpserver, adapter, release, sleeps, wire):
    parts = [wire.sse([c], done=False) for c in chat_chunks(["first"])]
    response = wire.streaming(parts, hang_after=1, release=release, content_type="text/event-stream")
    httpserver.expect_request("/v1/chat/completions").respond_with_response(response)
    start = time.monotonic()
    with pytest.raises(BackendTimeout, match="after 5 characters had streamed") as info:
        await adapter.generate(chat_request(), Timeouts(connect=1.0, read=0.5, total=10.0))
    assert time.monotonic() - start < 1.5
    assert info.value.before_first_token is False
    assert (len(httpserver.log), sleeps.delays) == (1, [])


async def test_connection_refused_names_url(dead_url, retry, sleeps):
    adapter = OpenAICompatAdapter(Endpoint("dead", "openai", dead_url, retries=1), retry)
    with pytest.raises(BackendUnreachable) as info:
        await adapter.generate(chat_request(), FAST)
    assert f"{dead_url}/v1/chat/completions" in str(info.value) and MODEL in str(info.value)
    assert len(sleeps.delays) == 1


async def test_list_models(httpserver, adapter):
    data = {"object": "list", "data": [{"id": MODEL, "object": "model"}, {"id": "tiny", "object": "model"}]}
    httpserver.expect_request("/v1/models", method="GET").respond_with_json(data)
    assert await adapter.list_models() == [MODEL, "tiny"]
