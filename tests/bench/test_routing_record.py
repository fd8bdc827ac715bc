"""bench routing records real outcomes through the loop's session, then replays them."""

from __future__ import annotations

import json

from tests.cli.support import kisystem, local_home, sse_answer

WRONG = "```python\nfrom typing import List\n\n\ndef has_close_elements(numbers: List[float], threshold: float) -> bool:\n    return False\n```"


def test_recording_one_problem_writes_the_outcome_table_and_replays_it(tmp_path, httpserver):
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "tiny"}]})
    httpserver.expect_request("/v1/chat/completions").respond_with_data(sse_answer(WRONG),
                                                                        content_type="text/event-stream")
    home = local_home(tmp_path / "home", httpserver.url_for(""))
    proc = kisystem(home, "bench", "routing", "--range", "0:1", "--k", "2", timeout=180)
    assert proc.returncode == 0, proc.stderr
    (table,) = (home / "bench").glob("routing-outcomes-*-k2.json")
    recorded = json.loads(table.read_text())
    assert "HumanEval_0" in json.dumps(recorded) and "tiny" in json.dumps(recorded)
    assert not list((home / "bench").glob("*.partial.json"))  # finished: the partial file is gone
