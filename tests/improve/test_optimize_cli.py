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
from kisystem.improve.plans import Strategy
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
