"""bench routing records real outcomes through the loop's session, then replays them."""

from __future__ import annotations

import json

from tests.cli.support import kisystem

WRONG = "```python\nfrom typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    return False\n```"


def sse_answer(text: str) -> str:
    chunk = {"choices": [{"delta": {"content": text}, "finish_reason": "stop"}]}
    return f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"


def test_recording_one_problem_writes_the_outcome_table_and_replays_it(tmp_path, httpserver):
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "tiny"}]})
    httpserver.expect_request("/v1/chat/completions").respond_with_data(sse_answer(WRONG),
                                                                        content_type="text/event-stream")
    home = tmp_path / "home"
    home.mkdir()
    (home / "inventory.toml").write_text(f'''
[endpoints.local]
backend = "openai"
base_url = "{httpserver.url_for("").rstrip("/")}"

[[models]]
name = "tiny"
rank = 1
timeout_s = 30
endpoint = "local"

[routes."Python/General"]
start = "tiny"
''')
    (home / "optimization_config.json").write_text(json.dumps({"inventory_file": str(home / "inventory.toml")}))
    proc = kisystem(home, "bench", "routing", "--range", "0:1", "--k", "2", timeout=180)
    assert proc.returncode == 0, proc.stderr
    (table,) = (home / "bench").glob("routing-outcomes-*-k2.json")
    recorded = json.loads(table.read_text())
    assert "HumanEval_0" in json.dumps(recorded) and "tiny" in json.dumps(recorded)
    assert not list((home / "bench").glob("*.partial.json"))  # finished: the partial file is gone
