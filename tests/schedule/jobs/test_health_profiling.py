"""health_profiling: the smoke set through every reachable model of a local fake server, health, opportunities."""

from __future__ import annotations

import json
import os
import time
import tomllib

import pytest
from werkzeug import Request, Response

from kisystem.improve.health import HealthMonitor
from kisystem.models.inventory import parse_inventory
from kisystem.schedule.jobs.health_profiling import health_profiling
from kisystem.schedule.jobs.smoke import smoke_tasks
from tests.schedule.jobs.support import PY, Db, Iter

RIGHT = {
    "add": "def add(a: int, b: int) -> int:\n    return a + b\n",
    "is_palindrome": "def is_palindrome(text: str) -> bool:\n    t = text.lower()\n    return t == t[::-1]\n",
    "count_vowels": "def count_vowels(text: str) -> int:\n    return 0\n",  # wrong: the judge says so
}


def answer(request: Request) -> Response:
    """A streamed chat answer to whichever smoke problem the prompt names, with its token usage."""
    prompt = json.loads(request.get_data())["messages"][-1]["content"]
    name = next(n for n in RIGHT if f"`{n}`" in prompt)
    chunks = [{"choices": [{"delta": {"content": f"```python\n{RIGHT[name]}```"}, "finish_reason": "stop"}]},
              {"choices": [], "usage": {"prompt_tokens": 120, "completion_tokens": 24}}]

    def stream():
        for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n".encode()
            time.sleep(0.05)  # the answer streams for a while after its first token
        yield b"data: [DONE]\n\n"

    return Response(stream(), content_type="text/event-stream")


@pytest.fixture
def db(tmp_path, httpserver):
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "tiny"}]})
    httpserver.expect_request("/tokenize").respond_with_data("no tokenizer", status=404)
    httpserver.expect_request("/v1/chat/completions").respond_with_handler(answer)
    inventory = parse_inventory(tomllib.loads(f"""
[endpoints.local]
backend = "openai"
base_url = "{httpserver.url_for("").rstrip("/")}"
retries = 0

[endpoints.gone]
backend = "openai"
base_url = "http://127.0.0.1:9"
retries = 0

[[models]]
name = "tiny"
rank = 1
timeout_s = 30
endpoint = "local"

[[models]]
name = "ghost"
rank = 2
timeout_s = 30
endpoint = "gone"

[routes."{PY}"]
start = "tiny"
escalation = ["ghost"]
"""), "health test fleet")
    db = Db(tmp_path / "home", inventory=inventory)
    yield db
    db.close()


async def test_the_smoke_set_runs_through_every_reachable_model_and_health_is_recorded(db):
    for i in range(3):
        db.run(f"t{i}", [Iter("tiny", "LOGIC"), Iter("tiny")])

    result = await health_profiling(db.ctx())

    assert result.status == "success"
    r = result.result
    assert r["smoke_set"] == [t.id for t in smoke_tasks()] and r["reachable"] == 1 and r["unreachable"] == ["ghost"]
    tiny = r["models"]["tiny"]
    assert (tiny["solved"], tiny["problems"], tiny["success_rate"]) == (2, 3, 0.6667)
    solved = {a["problem"]: a["solved"] for a in tiny["answers"]}
    assert solved == {"smoke_add": True, "smoke_is_palindrome": True, "smoke_count_vowels": False}
    assert all(a["completion_tokens"] == 24 and a["first_token_s"] is not None for a in tiny["answers"])
    assert tiny["first_token_s"] is not None and 0 < tiny["tokens_per_s"] < 24 / 0.05  # 24 tokens in >= 50 ms
    ghost = r["models"]["ghost"]
    assert ghost["reachable"] is False and "does not answer" in ghost["reason"]
    assert r["server_memory"] == {}  # no embedded model
    # health from the learning database: tiny solved 3 of 3 runs (on its second try), stored with its trend
    assert r["health"]["tiny"]["runs"] == 3 and r["health"]["tiny"]["success_rate"] == 1.0
    assert HealthMonitor(db.store, db.config, db.inventory).history("tiny")[0].score == r["health"]["tiny"]["score"]
    assert "no finished runs of ghost" in r["health"]["ghost"]["reason"]
    kinds = {(o["type"], o["agent"]) for o in r["opportunities"]}
    assert ("training_needed", "tiny") in kinds  # 3 runs, the evidence gate needs 5


async def test_a_fleet_nobody_serves_is_reported_not_fatal(db):
    db.inventory = parse_inventory(tomllib.loads(f"""
[endpoints.gone]
backend = "openai"
base_url = "http://127.0.0.1:9"
retries = 0

[[models]]
name = "ghost"
rank = 1
timeout_s = 30
endpoint = "gone"

[routes."{PY}"]
start = "ghost"
"""), "nobody")
    r = (await health_profiling(db.ctx())).result
    assert r["reachable"] == 0 and r["models"]["ghost"]["reachable"] is False
    assert r["health"]["ghost"]["score"] is None


def test_the_embedded_servers_memory_is_sized_beyond_weights_and_kv(tmp_path, monkeypatch):
    """The real check found every server 'not sized': the job handed catalog names where (name, n_ctx) belong."""
    from kisystem.models import catalog
    from kisystem.models.inventory import load_inventory
    from kisystem.schedule.jobs import health_profiling as job
    from tests.improve.test_resources import write_gguf

    db = Db(tmp_path / "home", inventory=load_inventory("embedded"))
    try:
        models = db.ctx().paths.models_dir
        models.mkdir(parents=True)
        for name in ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"):
            write_gguf(models / catalog.embedded_model(name).filename)
        me = os.getpid()  # this process stands in for the one server of all three models
        monkeypatch.setattr(job.server_records, "state_of", lambda home, port: ("shared", me))
        report, samples = job.server_memory(db.ctx(), db.inventory)
    finally:
        db.close()
    entry = report["qwen2.5-coder-0.5b"]
    assert "note" not in entry and entry["pid"] == me and len(entry["models"]) == 3
    assert entry["kv_mb"] > 0 and entry["beyond_mb"] == pytest.approx(
        entry["peak_mb"] - entry["weights_mb"] - entry["kv_mb"], abs=0.2)
    assert len(samples) == 1 and samples[0].memory_mb == entry["beyond_mb"]
