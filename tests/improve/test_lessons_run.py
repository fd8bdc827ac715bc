"""With lessons in prompts, a real `kisystem run` puts what earlier runs taught about the model into
its fix prompt; without them, the fix prompt has no lessons."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kisystem.improve.feedback import FeedbackLoop
from kisystem.store.learning import LearningStore
from tests.cli.support import kisystem, local_home, sse_answer

ADD = Path(__file__).parents[2] / "examples" / "judged" / "add.toml"
BROKEN = "```python\ndef add(a, b)\n    return a + b\n```"  # a syntax error: repaired, with a fix prompt
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
MODEL = "lessons-model"  # a name of its own: the local server is shared with other tests


@pytest.mark.parametrize("lessons", [True, False])
def test_a_fix_prompt_carries_the_lessons_of_earlier_runs(tmp_path, httpserver, lessons: bool) -> None:
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": MODEL}]})
    httpserver.expect_oneshot_request("/v1/chat/completions").respond_with_data(
        sse_answer(BROKEN), content_type="text/event-stream")
    httpserver.expect_request("/v1/chat/completions").respond_with_data(sse_answer(RIGHT),
                                                                        content_type="text/event-stream")
    home = local_home(tmp_path / "home", httpserver.url_for(""), {MODEL: ""}, MODEL)
    with LearningStore.open(home / "learning.db") as store:  # three earlier runs failed the same way
        for i in range(3):
            FeedbackLoop(store).record_failure(
                MODEL, f"earlier{i}:1", {"rule": "python.name_error", "signature": "py:name",
                                         "hint": "Define every name before use"},
                "RUNTIME", source="test", context={"domain": "Python/General"})

    proc = kisystem(home, "run", "--json", str(ADD), env={"KISYSTEM_LESSONS_IN_PROMPTS": "1" if lessons else "0"})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)[0]["outcome"] == "success"
    prompts = [json.loads(req.get_data())["messages"][-1]["content"] for req, _ in httpserver.log
               if req.path == "/v1/chat/completions" and json.loads(req.get_data())["model"] == MODEL]
    assert len(prompts) == 2
    assert "Lessons from earlier runs" not in prompts[0]  # a first try has nothing to fix
    assert ("Lessons from earlier runs" in prompts[1]) is lessons
    assert ("Define every name before use" in prompts[1]) is lessons
