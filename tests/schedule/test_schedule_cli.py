"""`kisystem schedule list | run-due | run [JOB] | history | stats`, each with --json, and their errors."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kisystem.cli import main as cli_main
from kisystem.errors import KisystemError
from kisystem.schedule import registry as registry_module
from kisystem.schedule.registry import Registry, builtin_tasks
from kisystem.schedule.tasks import OptimizationTask
from tests.cli.support import kisystem, one_error_line
from tests.schedule.support import EXAMPLE_PKG, install_example

EXAMPLES = ("--only", "example-report", "--only", "example-slow")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh home, the example job package installed (on sys.path), no jobs registered from Python."""
    for name in [n for n in os.environ if n.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("KISYSTEM_HOME", str(home))
    monkeypatch.syspath_prepend(str(EXAMPLE_PKG))
    monkeypatch.syspath_prepend(str(install_example(tmp_path / "site")))
    monkeypatch.delitem(sys.modules, "kisystem_example_jobs", raising=False)
    monkeypatch.setattr(registry_module, "_DEFAULT", Registry())
    return home


def invoke(*args: str, code: int = 0) -> Result:
    """The command in-process; ``code``: the exit code `kisystem` would end with (its return value or error's)."""
    cli_main._register_commands()
    result = CliRunner().invoke(cli_main.cli, ["schedule", *args], standalone_mode=False)
    err = result.exception
    got = (result.return_value or 0) if err is None else err.exit_code if isinstance(err, KisystemError) else err
    assert got == code, (result.output, err)
    return result


def as_json(*args: str, code: int = 0):
    return json.loads(invoke(*args, "--json", code=code).stdout)


def test_list_shows_the_built_in_and_the_entry_point_jobs(home: Path) -> None:
    jobs = {j["name"]: j for j in as_json("list")}
    assert {t.name for t in builtin_tasks(pytest.fail)} | {"example-report", "example-slow"} == set(jobs)
    slow = jobs["example-slow"]
    assert (slow["agent"], slow["trigger"], slow["interval_s"], slow["due"], slow["last"]) == (
        "example", "every:3600", 3600.0, True, None)
    assert not (home / "learning.db").exists()  # listing does not create the database
    assert "example-report" in invoke("list").stdout


def test_run_job_runs_it_now_and_list_shows_the_result(home: Path) -> None:
    run = as_json("run", "example-report")
    assert (run["task"], run["status"], run["reason"], run["manual"]) == (
        "example-report", "skipped", "no finished runs in the learning database yet", True)
    jobs = {j["name"]: j for j in as_json("list")}
    assert jobs["example-report"]["due"] is False and jobs["example-report"]["last"]["id"] == run["id"]
    assert "example-report: skipped" in invoke("run", "example-report").stdout


def test_run_due_runs_the_due_jobs_once(home: Path) -> None:
    first = {r["task"]: r for r in as_json("run-due", *EXAMPLES)}
    assert {t: r["status"] for t, r in first.items()} == {"example-report": "skipped", "example-slow": "success"}
    assert first["example-slow"]["result"]["slept_s"] == 0.0 and first["example-slow"]["missed"] == 0
    assert as_json("run-due", *EXAMPLES) == []
    assert "no job is due; the next one in 60 min" in invoke("run-due", *EXAMPLES).stdout


def test_run_once_prints_a_json_line_per_run(home: Path) -> None:
    lines = invoke("run", "--once", "--only", "example-slow", "--json").stdout.splitlines()
    assert [json.loads(line)["task"] for line in lines] == ["example-slow"]
    assert invoke("run", "--once", "--only", "example-slow", "--json").stdout == ""


def test_history_and_stats(home: Path) -> None:
    assert as_json("history") == [] and as_json("stats") == []
    invoke("run-due", *EXAMPLES)
    invoke("run", "example-slow")
    history = as_json("history", "--days", "1")
    assert [(r["task"], r["manual"]) for r in history][0] == ("example-slow", True)  # newest first
    assert sorted((r["task"], r["manual"]) for r in history[1:]) == [("example-report", False), ("example-slow", False)]
    assert [r["task"] for r in as_json("history", "example-report")] == ["example-report"]
    stats = {s["task"]: s for s in as_json("stats")}
    assert (stats["example-slow"]["runs"], stats["example-slow"]["success_rate"]) == (2, 1.0)
    assert (stats["example-report"]["skipped"], stats["example-report"]["success_rate"]) == (1, None)
    assert "example-slow" in invoke("history").stdout and "100 %" in invoke("stats").stdout


def test_a_failed_job_exits_1_with_its_error(home: Path) -> None:
    def broken(ctx) -> dict:
        raise ConnectionError("no route to the model server")

    registry_module.register(OptimizationTask("broken", "tester", "cve", broken, "always fails"))
    run = as_json("run", "broken", code=1)
    assert (run["status"], run["error"]) == ("error", "ConnectionError: no route to the model server")
    assert "Traceback" in run["traceback"]
    assert as_json("stats")[0]["success_rate"] == 0.0


def test_usage_errors(home: Path) -> None:
    assert "schedule run JOB runs one job now" in str(invoke("run", "example-slow", "--once", code=2).exception)
    assert "no scheduled job 'nope'" in str(invoke("history", "nope", code=2).exception)


def test_an_unknown_job_is_one_error_line_naming_the_known_ones(tmp_path: Path) -> None:
    env = {"PYTHONPATH": os.pathsep.join([str(EXAMPLE_PKG), str(install_example(tmp_path / "site"))])}
    for args in (("run", "nope"), ("run-due", "--only", "nope"), ("history", "nope")):
        proc = kisystem(tmp_path / "home", "schedule", *args, env=env)
        assert proc.returncode == 2
        line = one_error_line(proc)
        assert line.startswith("error: no scheduled job 'nope'; known jobs: ") and "example-slow" in line
