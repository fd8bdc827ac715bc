"""The routing replay benchmark on synthetic outcome tables with known answers (no models)."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from kisystem.bench.routing import (
    Lane,
    OracleArm,
    OutcomeTable,
    PolicyArm,
    Sample,
    StepClock,
    cache_path,
    comparison,
    hybrid_floor,
    load_table,
    oracle_start,
    record_samples,
    replay,
    replay_lane,
    save_table,
    simulate,
    summarize,
    task_stream,
    thompson_arm,
    verdict,
)
from kisystem.cli import main as cli_main
from kisystem.config import OptimizationConfig
from kisystem.errors import BackendTimeout, ModelNotFound
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.taskspec import PhaseSpec, TaskSpec, load_task
from kisystem.models.inventory import ModelSpec
from kisystem.routing.policy import StaticPolicy
from tests.loop.fakes import ScriptedModel

DOMAIN = "Python/General"
CHAIN = ("small", "big")
STOPLOSS, BUDGET = 2, 10


def ok(gen: float, test: float = 1.0) -> Sample:
    return Sample(True, 100.0, gen, test_s=test)


def bad(gen: float, test: float = 1.0, severity: int = 3, recoverable: bool = True,
        error_type: str | None = None) -> Sample:
    return Sample(False, 0.0, gen, test_s=test, severity=severity, recoverable=recoverable, error_type=error_type)


# small: 3 s a sample; big: 10 s a sample.
KNOWN = OutcomeTable(DOMAIN, CHAIN, {
    "easy": {"small": (ok(2), ok(2)), "big": (ok(9), ok(9))},
    "retry": {"small": (bad(2), ok(2)), "big": (ok(9), ok(9))},
    "hard": {"small": (bad(2), bad(2)), "big": (bad(9), ok(9))},
    "never": {"small": (bad(2), bad(2)), "big": (bad(9), bad(9))},
    "abort": {"small": (bad(2, recoverable=False), ok(2)), "big": (ok(9), ok(9))},
    "severe": {"small": (bad(2, severity=4), ok(2)), "big": (ok(9), ok(9))},
})


def spec(task_id: str) -> TaskSpec:
    return TaskSpec(id=task_id, domain=DOMAIN, language="python", prompt="p", solution_file="s.py",
                    test=PhaseSpec("true", 1.0))


def specs(table: OutcomeTable) -> dict[str, TaskSpec]:
    return {t: spec(t) for t in table.tasks}


def run_arm(arm, table: OutcomeTable, stream: list[str]):
    return replay_lane(Lane(arm, StepClock()), table, specs(table), stream, STOPLOSS, BUDGET)


@pytest.mark.parametrize("task, start, solved, cost, outcome, models", [
    ("easy", "small", True, 3, "success", ("small",)),
    ("retry", "small", True, 6, "success", ("small",)),
    ("hard", "small", True, 26, "success", ("small", "big")),
    ("never", "small", False, 26, "exhausted", ("small", "big")),
    ("abort", "small", False, 3, "aborted", ("small",)),
    ("severe", "small", True, 13, "success", ("small", "big")),
    ("hard", "big", True, 20, "success", ("big",)),
])
def test_simulate_follows_the_loop(task, start, solved, cost, outcome, models) -> None:
    run = simulate(KNOWN, task, start, STOPLOSS, BUDGET)
    assert (run.solved, run.cost_s, run.outcome) == (solved, pytest.approx(cost), outcome)
    assert tuple(s.model for s in run.stints) == models


def jump_after_first_fail(index: int, fails: int, error: str | None) -> int:
    return 1 if error == "LOGIC" else index


def test_simulate_lets_the_floor_lift_a_struggling_task() -> None:
    table = OutcomeTable(DOMAIN, CHAIN, {"t": {"small": (bad(2, error_type="LOGIC"), ok(2)),
                                              "big": (bad(9), ok(9))}})
    run = simulate(table, "t", "small", STOPLOSS, BUDGET, jump_after_first_fail)
    assert [(s.model, s.samples) for s in run.stints] == [("small", 1), ("big", 2)]
    assert (run.solved, run.cost_s) == (True, pytest.approx(23))
    assert simulate(table, "t", "small", STOPLOSS, BUDGET).cost_s == pytest.approx(6)  # without: small's retry


def test_hybrid_floor_is_the_loops() -> None:
    # complexity 0.6 ("def" with "for"), neutral meta 0.5; after one LOGIC fail: 0.2 + 0.18 + 0.225 = 0.605 -> band 2
    humaneval_like = TaskSpec(id="t", domain=DOMAIN, language="python", prompt="def f(xs):\n    for x in xs: pass",
                              solution_file="s.py", test=PhaseSpec("true", 1.0))
    floor = hybrid_floor(OptimizationConfig())(humaneval_like, CHAIN)
    assert floor(0, 0, None) == 0
    assert floor(0, 1, "COMPILATION") == 0
    assert floor(0, 1, "LOGIC") == 1


def test_budget_ends_the_task_as_failed() -> None:
    run = simulate(KNOWN, "hard", "small", STOPLOSS, budget=3)
    assert (run.solved, run.outcome, run.cost_s) == (False, "failed", pytest.approx(16))


def test_static_equals_the_hand_computed_result() -> None:
    result = run_arm(PolicyArm(StaticPolicy()), KNOWN, KNOWN.tasks)
    assert (result.solved, result.attempted) == (4, 6)
    assert result.cost_s == pytest.approx(3 + 6 + 26 + 26 + 3 + 13)
    assert result.starts == {"small": 6}


def test_oracle_takes_the_cheapest_solving_start() -> None:
    starts = {t: oracle_start(KNOWN, t, STOPLOSS, BUDGET) for t in KNOWN.tasks}
    assert starts == {"easy": "small", "retry": "small", "hard": "big", "never": "big",
                      "abort": "big", "severe": "big"}
    result = run_arm(OracleArm(KNOWN, STOPLOSS, BUDGET), KNOWN, KNOWN.tasks)
    assert (result.solved, result.cost_s) == (5, pytest.approx(3 + 6 + 20 + 20 + 10 + 10))


def random_table(seed: int, n: int = 12) -> OutcomeTable:
    rng = random.Random(seed)

    def sample(p: float, gen: float) -> Sample:
        return Sample(rng.random() < p, 0.0, gen * rng.uniform(0.5, 1.5), test_s=0.5,
                      recoverable=rng.random() > 0.05, error_type=rng.choice(["LOGIC", "RUNTIME"]))

    rows = {f"t{i}": {"small": (sample(0.3, 3), sample(0.3, 3)), "big": (sample(0.5, 8), sample(0.5, 8))}
            for i in range(n)}
    return OutcomeTable(DOMAIN, CHAIN, rows)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("floor", [None, jump_after_first_fail])
def test_oracle_never_loses(seed: int, floor) -> None:
    table = random_table(seed)
    stream = task_stream(table.tasks, 36, seed)
    floor_for = (lambda task, chain: floor) if floor else None
    lane = lambda arm: Lane(arm, StepClock(), floor_for=floor_for)
    oracle = replay_lane(lane(OracleArm(table, STOPLOSS, BUDGET, floor_for)), table, specs(table), stream,
                         STOPLOSS, BUDGET)
    for arm in (PolicyArm(StaticPolicy()), thompson_arm(seed, StepClock())):
        other = replay_lane(lane(arm), table, specs(table), stream, STOPLOSS, BUDGET)
        assert oracle.solved >= other.solved
    for task in table.tasks:  # per task: no start solves more cheaply than the oracle's
        best = simulate(table, task, oracle_start(table, task, STOPLOSS, BUDGET, floor), STOPLOSS, BUDGET, floor)
        for start in CHAIN:
            run = simulate(table, task, start, STOPLOSS, BUDGET, floor)
            assert (best.solved, -best.cost_s) >= (run.solved, -run.cost_s)


def test_thompson_beats_static_when_the_second_model_is_better_and_cheaper() -> None:
    rows = {f"t{i}": {"small": (bad(6), bad(6)), "big": (ok(3) if i % 10 else bad(3), ok(3))} for i in range(20)}
    table = OutcomeTable(DOMAIN, CHAIN, rows)
    stream = task_stream(table.tasks, 200, seed=1)
    static = run_arm(PolicyArm(StaticPolicy()), table, stream)
    thompson = run_arm(thompson_arm(1, StepClock()), table, stream)
    assert thompson.solved >= static.solved
    assert thompson.cost_s < 0.5 * static.cost_s
    assert thompson.quarter_cost_s[-1] == pytest.approx(4.4)  # by then it always starts on big
    assert thompson.starts["big"] > 0.9 * len(stream)


def test_thompson_keeps_the_cheap_model_when_it_is_good() -> None:
    rows = {f"t{i}": {"small": (ok(1), ok(1)), "big": (ok(9), ok(9))} for i in range(10)}
    table = OutcomeTable(DOMAIN, CHAIN, rows)
    result = run_arm(thompson_arm(2, StepClock()), table, task_stream(table.tasks, 100, 2))
    assert result.starts.get("small", 0) > 80


def test_task_stream_passes_are_shuffled_and_repeatable() -> None:
    tasks = [f"t{i}" for i in range(10)]
    stream = task_stream(tasks, 25, seed=4)
    assert len(stream) == 25
    assert sorted(stream[:10]) == sorted(tasks) and sorted(stream[10:20]) == sorted(tasks)
    assert stream[:10] != tasks
    assert stream == task_stream(tasks, 25, seed=4)


def test_summary_quarters_and_comparison() -> None:
    runs = [simulate(KNOWN, t, "small", STOPLOSS, BUDGET) for t in ["easy", "never", "retry", "abort"]]
    result = summarize("static", runs)
    assert result.quarter_solve_rate == (1.0, 0.0, 1.0, 0.0)
    assert result.quarter_cost_s == pytest.approx((3, 26, 6, 3))
    oracle = summarize("oracle", [simulate(KNOWN, t, "small", STOPLOSS, BUDGET) for t in ["easy", "retry"]])
    rows = {r["policy"]: r for r in comparison([result, oracle])}
    assert rows["static"]["solved_vs_static"] == 1.0
    assert rows["static"]["regret_solved"] == 0
    assert rows["oracle"]["cost_vs_static"] == pytest.approx(9 / 38, abs=1e-3)
    assert rows["static"]["regret_s"] == pytest.approx(29)


def test_verdict_says_which_way_it_went() -> None:
    rows = [{"policy": "static", "solved": 5, "cost_s": 100.0}, {"policy": "spec", "solved": 4, "cost_s": 120.0},
            {"policy": "thompson", "solved": 5, "cost_s": 60.0}, {"policy": "oracle", "solved": 6, "cost_s": 50.0}]
    assert verdict(rows) == ["spec: -1 solved, +20 s (+20 %) against static: learning does not pay.",
                             "thompson: +0 solved, -40 s (-40 %) against static: learning pays."]


@pytest.mark.parametrize("floor", [True, False])
def test_full_replay_runs_every_policy(floor: bool) -> None:
    table = random_table(3)
    stream = task_stream(table.tasks, 24, 3)
    results = replay(OptimizationConfig(), table, specs(table), stream, seed=3, floor=floor)
    assert [r.policy for r in results] == ["static", "spec", "thompson", "oracle"]
    oracle = results[-1]
    assert all(r.attempted == 24 and r.solved <= oracle.solved for r in results)


def test_recorded_cache_round_trips(tmp_path) -> None:
    table = OutcomeTable(DOMAIN, CHAIN, KNOWN.samples, {"k": 2, "inventory": "test"})
    path = save_table(table, cache_path(tmp_path, 0, 6, 2))
    assert path.name == "routing-outcomes-0-6-k2.json"
    loaded = load_table(path)
    assert loaded == table
    assert loaded.samples["abort"]["small"][0].recoverable is False


def test_cli_replays_from_the_cache_without_a_model(tmp_path, monkeypatch) -> None:
    for name in [n for n in os.environ if n.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    rows = {f"HumanEval_{i}": {"qwen2.5-coder-0.5b": (bad(2), ok(2) if i else bad(2)), "qwen2.5-coder-1.5b": (ok(5), ok(5))}
            for i in range(3)}
    save_table(OutcomeTable(DOMAIN, ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"), rows), cache_path(home, 0, 3, 2))
    cli_main._register_commands()
    result = CliRunner().invoke(cli_main.cli, ["--home", str(home), "bench", "routing", "--range", "0:3",
                                               "--stream-length", "12", "--shuffle-seed", "5"])
    assert result.exit_code == 0, result.output
    assert "reusing recorded outcomes" in result.output
    for policy in ("static", "spec", "thompson", "oracle"):
        assert policy in result.output
    out = home / "bench" / "routing-replay-0-3-k2-n12-seed5.json"
    data = json.loads(out.read_text())
    assert [p["policy"] for p in data["policies"]] == ["static", "spec", "thompson", "oracle"]
    assert data["policies"][0]["solved"] == 12  # the 0.5B misses HumanEval_0, the 1.5B solves it
    assert "thompson: +0 solved" in result.output


ADD_GOOD = "```python\n# file: solution.py\ndef add(a, b):\n    return a + b\n```"
ADD_WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
SMALL = ModelSpec("small", 1, "", 30.0, "e")


def fake_session(tmp_path, script):
    model = ScriptedModel(script)
    return SimpleNamespace(generator=model, attempts=AttemptRunner(PhaseRunner(OptimizationConfig()), tmp_path)), model


def add_task() -> TaskSpec:
    return load_task(Path(__file__).parent.parent / "loop" / "data" / "loop" / "add.toml")


async def test_record_samples_greedy_then_seeded_without_feedback(tmp_path) -> None:
    sup, model = fake_session(tmp_path, {"small": [ADD_WRONG, ADD_GOOD]})
    samples = await record_samples(sup, add_task(), SMALL, 2, OptimizationConfig())
    assert [s.solved for s in samples] == [False, True]
    assert samples[1].score == 100.0 and samples[1].test_s > 0 and samples[1].tokens > 0
    assert [(r.temperature, r.seed) for r in model.requests] == [(0.0, None), (0.8, 1)]
    assert model.requests[1].messages == model.requests[0].messages  # no fix feedback in a recorded sample


async def test_record_keeps_a_backend_timeout_and_stops_on_a_missing_model(tmp_path) -> None:
    sup, _ = fake_session(tmp_path, {"small": [BackendTimeout("slow"), ADD_GOOD]})
    samples = await record_samples(sup, add_task(), SMALL, 2, OptimizationConfig())
    assert [s.solved for s in samples] == [False, True] and samples[0].recoverable
    sup, _ = fake_session(tmp_path, {"small": [ModelNotFound("small", "e")]})
    with pytest.raises(ModelNotFound):
        await record_samples(sup, add_task(), SMALL, 1, OptimizationConfig())
