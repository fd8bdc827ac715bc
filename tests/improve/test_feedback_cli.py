"""`kisystem feedback status | record | rate | patterns | learnings | summary | stats`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kisystem.cli import main as cli_main
from kisystem.improve.feedback import FeedbackLoop
from kisystem.store.learning import LearningStore, RunResult
from tests.cli.support import kisystem, one_error_line

QWEN, CPP = "qwen2.5-coder-0.5b", "C++/System"
RUN = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("KISYSTEM_HOME", str(home))
    return home


@pytest.fixture
def history(home: Path) -> Path:
    db = home / "learning.db"
    with LearningStore.open(db) as store:
        store.start_run("hello", CPP, QWEN, run_id=RUN)
        store.finish_run(RUN, RunResult(QWEN, 2, 40.0, "failed", error_type="COMPILATION"))
        fb = FeedbackLoop(store)
        for i in range(5):
            fb.record_failure(QWEN, f"r{i}:1", {"rule": "ld.undefined_reference", "hint": "Link it"}, "COMPILATION",
                              source="test", context={"domain": CPP, "run_id": f"r{i}"})
        fb.record_success(QWEN, "r9:1", source="test", context={"domain": CPP})
    return db


def invoke(*args: str) -> Result:
    cli_main._register_commands()
    return CliRunner().invoke(cli_main.cli, list(args))


def as_json(*args: str) -> object:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def fails(capsys: pytest.CaptureFixture, *args: str) -> str:
    """The one error line of ``kisystem ARGS`` run through the real entry point (exit 2)."""
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(list(args))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err
    return err.strip()


def test_status_of_a_missing_database_is_empty_and_creates_nothing(home: Path) -> None:
    data = as_json("feedback", "status")
    assert data["entries"] == 0 and data["thresholds"] == {"min_frequency": 3, "min_confidence": 0.6,
                                                           "lookback_days": 7}
    assert as_json("feedback", "stats") == {"entries": 0, "agents": 0, "aggregates": []}
    assert as_json("feedback", "patterns") == []
    assert not (home / "learning.db").exists()


def test_record_then_stats(home: Path) -> None:
    entry = as_json("feedback", "record", "m", "op1", "quality_score", "0.7", "--source", "guardian",
                    "--detail", "tool=ruff", "--context", "domain=Audio/DSP")
    assert (entry["type"], entry["score"], entry["details"], entry["context"]) == (
        "quality_score", 0.7, {"tool": "ruff"}, {"domain": "Audio/DSP"})
    as_json("feedback", "record", "m", "op2", "user_rating", "5")
    stats = as_json("feedback", "stats")
    assert stats["entries"] == 2
    assert [(a["type"], a["mean"]) for a in stats["aggregates"]] == [("quality_score", 0.7), ("user_rating", 1.0)]
    assert "quality_score" in invoke("feedback", "stats").stdout


def test_status_counts(history: Path) -> None:
    data = as_json("feedback", "status")
    assert (data["entries"], data["agents"], data["by_type"]) == (6, 1, {"failure": 5, "success": 1})
    assert "entries" in invoke("feedback", "status").stdout


def test_rate_a_run(history: Path) -> None:
    entry = as_json("feedback", "rate", RUN[:8], "2", "--comment", "does not link")
    assert (entry["agent_id"], entry["operation_id"], entry["score"]) == (QWEN, f"{RUN}:2", 0.25)
    assert entry["details"] == {"rating": 2, "comment": "does not link"}
    assert "rated run" in invoke("feedback", "rate", RUN, "5").stdout


def test_patterns_learnings_and_summary(history: Path) -> None:
    patterns = as_json("feedback", "patterns", QWEN)
    failure = next(p for p in patterns if p["pattern_type"] == "failure")
    assert failure["description"].startswith(f"{QWEN} fails C++/System tasks with COMPILATION `undefined reference` "
                                             "5 of 6 times this week")
    assert "undefined reference" in invoke("feedback", "patterns").stdout
    learnings = as_json("feedback", "learnings", QWEN)
    assert [item["learning_type"] for item in learnings] == ["error_avoidance"]
    assert learnings[0]["pattern_ids"] == [failure["id"]]
    assert "error_avoidance" in invoke("feedback", "learnings").stdout
    summary = as_json("feedback", "summary", QWEN, "--days", "3")
    assert (summary["entries"], summary["days"], summary["success_rate"]) == (6, 3, 0.1667)
    assert summary["patterns"] and "failure" in invoke("feedback", "summary", QWEN).stdout


@pytest.mark.parametrize("args, message", [
    (("feedback", "summary", "nobody"), "no feedback recorded for agent 'nobody' (agents with feedback: "),
    (("feedback", "patterns", "nobody"), "no feedback recorded for agent 'nobody'"),
    (("feedback", "learnings", "nobody"), "no feedback recorded for agent 'nobody'"),
    (("feedback", "rate", "feedfacecafe", "3"), "no run with id 'feedfacecafe'"),
    (("feedback", "rate", RUN, "7"), "rating 7 is not allowed (allowed: a whole number 1..5)"),
    (("feedback", "rate", RUN, "good"), "rating 'good' is not allowed (allowed: a whole number 1..5)"),
    (("feedback", "record", "m", "op", "sucess", "1"), "unknown feedback type 'sucess'"),
    (("feedback", "record", "m", "op", "success", "1", "--source", "me"), "unknown feedback source 'me'"),
    (("feedback", "record", "m", "op", "success", "2"), "success score 2.0 is out of range (allowed: 0..1)"),
    (("feedback", "record", "m", "op", "success", "x"), "score must be a number, got 'x'"),
    (("feedback", "record", "m", "op", "success", "1", "--detail", "oops"), "--detail takes KEY=VALUE"),
])  # fmt: skip
def test_usage_errors_are_one_line(history: Path, capsys: pytest.CaptureFixture, args: tuple, message: str) -> None:
    assert fails(capsys, *args).startswith(f"error: {message}")


def test_the_installed_command(tmp_path: Path) -> None:
    proc = kisystem(tmp_path / "home", "feedback", "summary", "nobody")
    assert proc.returncode == 2
    assert one_error_line(proc) == "error: no feedback recorded for agent 'nobody' (agents with feedback: none yet)"
