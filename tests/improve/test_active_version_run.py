"""A kept configuration version is what the next `kisystem run` routes by."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from kisystem.improve.overlay import Overlay
from kisystem.improve.versions import OptimizationStore
from kisystem.models.inventory import Route
from tests.cli.support import kisystem, local_home, sse_answer

ADD = Path(__file__).parents[2] / "examples" / "judged" / "add.toml"
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"


def test_the_next_run_starts_on_the_model_the_active_version_chose(tmp_path, httpserver):
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "first"}, {"id": "second"}]})
    httpserver.expect_request("/v1/chat/completions").respond_with_data(sse_answer(RIGHT),
                                                                        content_type="text/event-stream")
    home = local_home(tmp_path / "home", httpserver.url_for(""), {"first": "", "second": ""}, "first", ("second",))
    with OptimizationStore.open(home / "learning.db") as store:
        overlay = Overlay().with_route(Route("Python/General", "second", ("first",)))
        version = store.add_version(overlay, None, "test: start Python/General on second")
        store.activate(version.id, "kept by the test")

    proc = kisystem(home, "run", "--json", str(ADD))
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["outcome"] == "success" and result["models_tried"] == ["second"]
    asked = [json.loads(req.get_data())["model"] for req, _ in httpserver.log if req.path == "/v1/chat/completions"]
    # the server is shared: a request an earlier test left hanging may land in this log
    assert [m for m in asked if m in ("first", "second")] == ["second"]
    assert f"configuration version {version.id} is active" in proc.stderr
    with contextlib.closing(sqlite3.connect(home / "learning.db")) as db:  # the run fed the feedback loop too
        fed = db.execute("SELECT source, type FROM feedback_entries WHERE agent_id = 'second'").fetchall()
    assert ("test", "success") in fed and ("system", "success") in fed
    assert ("guardian", "quality_score") in fed and ("guardian", "security") in fed  # the static analysis
