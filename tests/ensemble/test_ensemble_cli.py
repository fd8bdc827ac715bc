"""`kisystem ensemble ask|solve` as a user runs them, against a local fake OpenAI-compatible server:
the answer, the members and their times, the query cache, and a task judged in the sandbox."""

from __future__ import annotations

import json
from pathlib import Path

from werkzeug import Response

from kisystem.cli.ensemble_cmd import members_table, summary
from kisystem.ensemble.members import Tier
from kisystem.errors import BackendError
from kisystem.store.learning import LearningStore
from tests.cli.support import kisystem, local_home, one_error_line, sse_answer
from tests.ensemble.judging import TASK, ScriptedJudging, config, fleet
from tests.ensemble.scripted import ScriptedGenerator, run_virtual

ADD = Path(__file__).parents[2] / "examples" / "judged" / "add.toml"
RIGHT = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
TWO = {"ens-a": "", "ens-b": ""}  # names of their own: the local server is shared with other tests
ONE_SAMPLE = {"KISYSTEM_ENSEMBLE__MAX_SAMPLES_PER_MODEL": "1"}


def serve(httpserver, answers: dict[str, str]) -> None:
    """Each model answers its own text."""
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": m} for m in answers]})

    def answer(request) -> Response:
        model = json.loads(request.get_data())["model"]
        return Response(sse_answer(answers[model]), content_type="text/event-stream")

    httpserver.expect_request("/v1/chat/completions").respond_with_handler(answer)


def chats(httpserver) -> int:
    return sum(entry.path == "/v1/chat/completions" for entry, _ in httpserver.log)


def test_ask_answers_with_members_times_and_confidence_then_from_the_cache(tmp_path, httpserver) -> None:
    serve(httpserver, {"ens-a": "Paris", "ens-b": "Paris."})
    home = local_home(tmp_path / "home", httpserver.url_for(""), TWO, "ens-a", ("ens-b",))
    proc = kisystem(home, "ensemble", "ask", "Capital of France?", "--tier", "expert", "--json", env=ONE_SAMPLE)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["answer"] in ("Paris", "Paris.") and result["tier"] == "expert" and not result["cached"]
    assert result["consensus"]["confidence"] == 1.0 and result["consensus"]["agreement"] == 1.0
    members = result["rounds"][0]["members"]
    assert sorted(m["model"] for m in members) == ["ens-a", "ens-b"] and all(m["seconds"] >= 0 for m in members)
    assert chats(httpserver) == 2

    again = kisystem(home, "ensemble", "ask", "Capital  of France?", "--tier", "expert", env=ONE_SAMPLE)
    assert again.returncode == 0, again.stderr
    assert "from the query cache" in again.stdout and "Paris" in again.stdout and chats(httpserver) == 2

    fresh = kisystem(home, "ensemble", "ask", "Capital of France?", "--tier", "expert", "--no-cache", env=ONE_SAMPLE)
    assert fresh.returncode == 0, fresh.stderr
    assert "tier expert; 2 of 2 members answered; text consensus; confidence 1.00" in fresh.stdout
    assert "ens-a" in fresh.stdout and "ens-b" in fresh.stdout and chats(httpserver) == 4
    with LearningStore.open(home / "learning.db") as store:
        runs = store.recent_runs(10)
    assert len(runs) == 4 and {r.outcome for r in runs} == {"success"}  # the cached answer asked nobody


def test_solve_judges_every_candidate_in_the_sandbox_and_takes_the_best(tmp_path, httpserver) -> None:
    serve(httpserver, {"ens-a": WRONG, "ens-b": RIGHT})
    home = local_home(tmp_path / "home", httpserver.url_for(""), TWO, "ens-a", ("ens-b",))
    proc = kisystem(home, "ensemble", "solve", str(ADD), "--tier", "expert", "--json", env=ONE_SAMPLE, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["solved"] and result["consensus"]["method"] == "tests" and result["consensus"]["model"] == "ens-b"
    assert "return a + b" in result["code"]
    with LearningStore.open(home / "learning.db") as store:
        runs = {r.model: r for r in store.recent_runs(10)}
        kinds = [e.kind for e in store.events(runs["ens-b"].run_id)]
    assert runs["ens-b"].outcome == "success" and runs["ens-b"].judge == "calls" and runs["ens-b"].task == "example.add"
    # ens-a is judged and fails, unless ens-b passed first and stopped it
    assert runs["ens-a"].outcome in ("failed", "aborted")
    assert "test" in kinds and "consensus" in kinds


def test_a_wrong_tier_is_one_usage_error(tmp_path, httpserver) -> None:
    home = local_home(tmp_path / "home", httpserver.url_for(""), TWO, "ens-a", ("ens-b",))
    proc = kisystem(home, "ensemble", "ask", "hello", "--tier", "huge")
    assert proc.returncode == 2
    assert one_error_line(proc) == "error: unknown tier 'huge' (allowed: simple, medium, complex, expert)"
    assert not httpserver.log  # refused before any model was asked


def test_the_summary_line_and_members_table_say_what_happened(tmp_path) -> None:
    from rich.console import Console

    from kisystem.ensemble.ensemble import Ensemble

    gen = ScriptedGenerator({"m1": [(1.0, BackendError("down")), (2.0, "RIGHT")]})  # medium of two: m1 alone
    ens = Ensemble(config(max_samples_per_model=1), fleet(2), gen, ["m1", "m2"], attempts=ScriptedJudging(tmp_path))
    result = run_virtual(ens.solve(TASK, Tier.MEDIUM))
    assert summary(result, "calls") == ("tier medium; 1 of 2 members answered; tests consensus; confidence 1.00; "
                                        "agreement 0.00; 3.0 s wall, 3.0 model-s; after a fallback to the tier below; "
                                        "solved, judge (calls)")
    console = Console(record=True, width=150)
    console.print(members_table(result))
    rows = [line for line in console.export_text().splitlines() if " m1 " in line or " m2 " in line]
    assert len(rows) == 2 and "failed: down" in rows[0] and "2 (fallback)" in rows[1] and "score 100" in rows[1]
    assert rows[1].rstrip(" │").endswith("*") and not rows[0].rstrip(" │").endswith("*")
