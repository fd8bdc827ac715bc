"""`kisystem optimize approve | reject | history` and `kisystem config versions | rollback`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kisystem.bench.routing import save_table
from kisystem.cli import main as cli_main
from kisystem.config import OptimizationConfig
from kisystem.improve.auto import auto_optimize
from kisystem.improve.plans import Opportunity, Plan, SetMaxTokens, Severity, Strategy
from kisystem.improve.validate import ReplayValidator
from kisystem.improve.versions import OptimizationStore
from tests.cli.support import kisystem, one_error_line
from tests.improve.optimize_support import FLEET_TOML, PY, SMALL_USELESS, declining, fleet


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home whose config uses the test fleet, with two plans awaiting approval and recorded outcomes."""
    for name in [n for n in os.environ if n.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    (home / "fleet.toml").write_text(FLEET_TOML)
    (home / "optimization_config.json").write_text(json.dumps({"inventory_file": str(home / "fleet.toml")}))
    monkeypatch.setenv("KISYSTEM_HOME", str(home))
    return home


def awaiting(home: Path, n: int = 1) -> list[int]:
    """``n`` HIGH plans (small -> start on big) stored awaiting approval; their ids."""
    with OptimizationStore.open(home / "learning.db") as store:
        return [auto_optimize(store, OptimizationConfig(), fleet(), [declining()], Strategy.AUTO,
                              ReplayValidator(SMALL_USELESS))[0].plan.id for _ in range(n)]


def record_outcomes(home: Path) -> None:
    save_table(SMALL_USELESS, home / "bench" / "routing-outcomes-test-k2.json")


def invoke(*args: str) -> Result:
    cli_main._register_commands()
    result = CliRunner().invoke(cli_main.cli, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


def as_json(*args: str):
    return json.loads(invoke(*args, "--json").output)


def test_approve_validates_on_the_recorded_outcomes_and_keeps_a_better_plan(home: Path) -> None:
    [plan_id] = awaiting(home)
    record_outcomes(home)
    shown = as_json("optimize", "approve", str(plan_id))
    assert shown["plan"]["status"] == "applied_kept" and shown["plan"]["changes"] == [
        {"kind": "move_start", "domain": PY, "model": "big"}]
    assert shown["result"]["kept"] and shown["result"]["before"]["solved"] == shown["result"]["after"]["solved"] == 4
    assert shown["result"]["after"]["model_seconds"] < shown["result"]["before"]["model_seconds"]
    versions = as_json("config", "versions")
    assert [(v["version"], v["state"], v["active"]) for v in versions] == [(0, "shipped", False), (1, "kept", True)]
    assert versions[1]["overlay"]["routes"][PY] == {"start": "big", "escalation": ["small"]}


def test_a_max_tokens_plan_is_approved_without_recorded_outcomes_and_read_back(home: Path) -> None:
    opp = Opportunity("quality_issues", Severity.MEDIUM, "small", None, {"cause": "answers cut at max_tokens"})
    with OptimizationStore.open(home / "learning.db") as store:
        plan_id = store.add_plan(Plan(opp, Strategy.AUTO, (SetMaxTokens("small", 640),), "longer answers",
                                      "tasks_solved"), "awaiting_approval").id
    shown = as_json("optimize", "approve", str(plan_id))  # no routing-outcomes file: no replay is needed
    assert shown["plan"]["status"] == "applied_kept" and shown["result"]["kept"]
    assert as_json("config", "versions")[1]["overlay"]["models"] == {"small": {"max_tokens": 640}}
    [listed] = as_json("optimize", "history", "small")
    assert listed["changes"] == [{"kind": "set_max_tokens", "model": "small", "n": 640}]


def test_history_lists_plans_and_their_results(home: Path) -> None:
    first, second = awaiting(home, 2)
    record_outcomes(home)
    invoke("optimize", "approve", str(first))
    invoke("optimize", "reject", str(second))
    history = as_json("optimize", "history", "small")
    assert [(p["id"], p["status"], len(p["results"])) for p in history] == [
        (first, "applied_kept", 1), (second, "rejected", 0)]
    assert as_json("optimize", "history", "big") == []  # a model of the inventory without plans
    text = invoke("optimize", "history").output
    assert f"plan {first} [applied_kept] HIGH success_rate_decline (small {PY}): {PY}: start on big" in text
    assert "version 1: approved; kept: better on tasks solved, then model-seconds" in text


def test_rollback_restores_a_version_and_the_shipped_configuration(home: Path) -> None:
    [plan_id] = awaiting(home)
    record_outcomes(home)
    invoke("optimize", "approve", str(plan_id))
    assert invoke("config", "rollback", "0").output == "active: the shipped configuration (0)\n"
    assert [v["active"] for v in as_json("config", "versions")] == [True, False]
    assert as_json("config", "rollback", "1")["version"] == 1
    lines = invoke("config", "versions").output.splitlines()
    assert lines[0] == "  0  shipped  the shipped configuration"
    assert lines[1].startswith("* 1  kept  ") and lines[1].endswith(f"(from 0)  plan {plan_id}: {PY}: start on big")


def test_versions_of_a_home_without_a_database_is_the_shipped_one_and_creates_nothing(home: Path) -> None:
    assert as_json("config", "versions") == [
        {"version": 0, "state": "shipped", "active": True, "reason": "the shipped configuration"}]
    assert as_json("optimize", "history") == []
    assert not (home / "learning.db").exists()


@pytest.mark.parametrize("args, message", [
    (("optimize", "approve", "99"), "error: no optimization plan 99"),
    (("optimize", "reject", "99", "--json"), "error: no optimization plan 99"),
    (("optimize", "history", "ghost"), "error: unknown agent 'ghost' (models: small, big, huge)"),
    (("config", "rollback", "5"), "error: no configuration version 5 (versions: 0 = shipped, none yet)"),
    (("optimize", "approve", "1"), "error: no recorded outcomes to validate on: run `kisystem bench routing` "
                                   "first, or give --outcomes FILE"),
])
def test_unknown_ids_and_missing_outcomes_are_one_line_usage_errors(home: Path, args: tuple, message: str) -> None:
    awaiting(home)
    proc = kisystem(home, *args)
    assert proc.returncode == 2 and one_error_line(proc) == message


def test_approving_twice_or_a_rejected_plan_is_refused(home: Path) -> None:
    first, second = awaiting(home, 2)
    record_outcomes(home)
    invoke("optimize", "reject", str(second))
    proc = kisystem(home, "optimize", "approve", str(second))
    assert proc.returncode == 2
    assert one_error_line(proc) == f"error: plan {second} is rejected, not awaiting_approval"


# -- status | analyze | opportunities | plan | auto | stats ---------------------------------


def slow_failing_small(home: Path) -> None:
    """Now: 3 runs of small on Python, each a LOGIC failure after 50 s (over small's SLA of 30 s), then big
    solves it in 10 s; and the test feedback of small's failures."""
    from datetime import UTC, datetime, timedelta

    from tests.improve.health_support import Clock, Db

    db = Db(home / "learning.db", clock=Clock(datetime.now(UTC) - timedelta(hours=1)))
    for i in range(3):
        db.run("big", iterations=((50.0, True, "small"), (50.0, True, "small"), (10.0, False)), tried=("small", "big"))
        db.feedback.record_failure("small", f"r{i}:1", {"rule": "logic.wrong_answer"}, "LOGIC", source="test",
                                   context={"domain": PY})
    db.close()


def test_status_and_stats_of_a_home_without_a_database_create_nothing(home: Path) -> None:
    assert as_json("optimize", "status") == {"active_version": 0, "plans": {}, "awaiting_approval": [],
                                             "agents": ["small", "big", "huge"], "health": {}}
    assert as_json("optimize", "stats")["versions"] == 0
    assert "small: no health computed yet" in invoke("optimize", "status").output
    assert not (home / "learning.db").exists()


def test_analyze_computes_and_stores_health_and_lists_opportunities(home: Path) -> None:
    slow_failing_small(home)
    shown = as_json("optimize", "analyze", "small", "--offline")
    health = shown["health"]
    assert (health["runs"], health["success_rate"], health["error_rate"], health["trend"]) == (3, 0.0, 1.0, "stable")
    assert health["response_time_score"] == pytest.approx(1 / 3, abs=0.01)  # 50 s: 2/3 of the way to 60 s
    assert health["score"] == pytest.approx(100 * (0.25 / 3 + 0.2 * 0.8), abs=0.3)
    types = {o["type"] for o in shown["opportunities"]}
    assert {"error_pattern", "performance_degradation", "training_needed"} <= types
    text = invoke("optimize", "analyze", "small", "--offline").output
    assert "small: health 24.3 / 100 over 7 days, stable (earlier mean 24.3)" in text
    assert "unmeasured: no quality_score feedback, the neutral default" in text
    assert "MEDIUM   performance_degradation: small on Python/General: mean generation 50 s over the SLA 30 s" in text
    assert as_json("optimize", "analyze", "huge", "--offline")["health"]["reason"] == (
        "no finished runs of huge in the last 7 days")
    status = as_json("optimize", "status")
    assert set(status["health"]) == {"small"} and status["health"]["small"]["score"] == pytest.approx(24.33, abs=0.01)
    assert as_json("optimize", "stats")["health"]["small"]["computed"] == 2


def test_opportunities_of_every_model_or_one(home: Path) -> None:
    slow_failing_small(home)
    every = as_json("optimize", "opportunities", "--offline")
    assert [o["severity"] for o in every] == sorted((o["severity"] for o in every),
                                                    key=["CRITICAL", "HIGH", "MEDIUM", "LOW"].index)
    assert {o["agent"] for o in every} == {"small"}  # training_needed too: small starts the Python route
    assert as_json("optimize", "opportunities", "small", "--offline") == every
    assert as_json("optimize", "opportunities", "big", "--offline") == []
    assert invoke("optimize", "opportunities", "huge", "--offline").output == "no opportunities found for huge\n"


def test_opportunities_ask_a_backend_for_its_models(home: Path, httpserver) -> None:
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "small"}, {"id": "tiny"}]})
    (home / "fleet.toml").write_text(FLEET_TOML.replace("http://127.0.0.1:9", httpserver.url_for("").rstrip("/")))
    [o] = as_json("optimize", "opportunities")
    assert (o["type"], o["severity"], o["evidence"]["offered"], o["evidence"]["kind"]) == (
        "tool_upgrade", "LOW", "tiny", "new_model")


def test_plan_shows_plans_and_stores_nothing(home: Path) -> None:
    slow_failing_small(home)
    plans = as_json("optimize", "plan", "small", "--strategy", "conservative")
    assert {(p["opportunity"], p["summary"]) for p in plans} >= {
        ("performance_degradation", "timeout of small: 45 s"), ("error_pattern", "stop-loss of small: 1")}
    assert all(p["id"] is None for p in plans)
    assert as_json("optimize", "history") == []
    assert "waits for approval" in invoke("optimize", "plan", "small").output


def test_auto_applies_medium_plans_and_leaves_high_ones_for_approval(home: Path) -> None:
    slow_failing_small(home)
    record_outcomes(home)
    done = as_json("optimize", "auto", "small")
    by_type = {p["plan"]["opportunity"]: p for p in done["plans"]}
    assert by_type["error_pattern"]["plan"]["status"] == "awaiting_approval" and by_type["error_pattern"]["result"] is None
    slow = by_type["performance_degradation"]
    # small's recorded failures take 5 s: a 45 s timeout changes nothing on replay, so it is not kept.
    assert slow["plan"]["status"] == "rolled_back" and not slow["result"]["kept"]
    status = as_json("optimize", "status")
    assert status["active_version"] == 0 and status["awaiting_approval"] == [by_type["error_pattern"]["plan"]["id"]]
    stats = as_json("optimize", "stats")
    assert stats["results"] == {"rolled_back": 1} and stats["plans_by_severity"]["HIGH"] >= 1


@pytest.mark.parametrize("args, message", [
    (("optimize", "analyze", "ghost"), "error: unknown agent 'ghost' (agents: small, big, huge)"),
    (("optimize", "opportunities", "ghost", "--offline"), "error: unknown agent 'ghost' (agents: small, big, huge)"),
    (("optimize", "plan", "small", "--strategy", "bold"),
     "error: unknown strategy 'bold' (allowed: auto, conservative, aggressive, minimal, comprehensive)"),
    (("optimize", "auto", "small", "--strategy", "bold"),
     "error: unknown strategy 'bold' (allowed: auto, conservative, aggressive, minimal, comprehensive)"),
    (("optimize", "auto", "small"), ("error: no recorded outcomes to validate on: run `kisystem bench routing` "
                                     "first, or give --outcomes FILE")),
])
def test_unknown_agent_strategy_or_no_outcomes_are_one_line_errors(home: Path, args: tuple, message: str) -> None:
    proc = kisystem(home, *args)
    assert proc.returncode == 2 and one_error_line(proc) == message
