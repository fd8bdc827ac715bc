"""The routing replay benchmark on synthetic outcome tables with known answers (no models)."""

from __future__ import annotations

import json
import os
import random
from dataclasses import asdict, replace
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from kisystem.bench.routing import (
    TESTSDOCS_DIR,
    Lane,
    OracleArm,
    OutcomeTable,
    PolicyArm,
    Sample,
    StepClock,
    cache_path,
    comparison,
    default_k,
    evidence_lines,
    gate_report,
    hybrid_floor,
    load_table,
    mixed_tasks,
    oracle_start,
    own_stoplosses,
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
from kisystem.models.inventory import ModelSpec, load_inventory
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
KNOWN = OutcomeTable.one_domain(DOMAIN, CHAIN, {
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
    table = OutcomeTable.one_domain(DOMAIN, CHAIN, {"t": {"small": (bad(2, error_type="LOGIC"), ok(2)),
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
    return OutcomeTable.one_domain(DOMAIN, CHAIN, rows)


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
    table = OutcomeTable.one_domain(DOMAIN, CHAIN, rows)
    stream = task_stream(table.tasks, 200, seed=1)
    static = run_arm(PolicyArm(StaticPolicy()), table, stream)
    thompson = run_arm(thompson_arm(1, StepClock()), table, stream)
    assert thompson.solved >= static.solved
    assert thompson.cost_s < 0.5 * static.cost_s
    assert thompson.quarter_cost_s[-1] == pytest.approx(4.4)  # by then it always starts on big
    assert thompson.starts["big"] > 0.9 * len(stream)


def test_thompson_keeps_the_cheap_model_when_it_is_good() -> None:
    rows = {f"t{i}": {"small": (ok(1), ok(1)), "big": (ok(9), ok(9))} for i in range(10)}
    table = OutcomeTable.one_domain(DOMAIN, CHAIN, rows)
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
    table = OutcomeTable.one_domain(DOMAIN, CHAIN, KNOWN.samples, {"k": 2, "inventory": "test"})
    path = save_table(table, cache_path(tmp_path, table.tasks, table.chains, 2))
    assert path.name.startswith("routing-outcomes-") and path.name.endswith("-k2.json")
    loaded = load_table(path)
    assert loaded == table
    assert loaded.samples["abort"]["small"][0].recoverable is False
    mixed = load_table(save_table(MIXED, tmp_path / "mixed.json"))
    assert mixed == MIXED and mixed.chain("b0") == LONG_CHAIN


def test_a_first_version_cache_file_reads_as_one_domain(tmp_path) -> None:
    old = {"domain": DOMAIN, "chain": list(CHAIN), "meta": {"k": 2},
           "samples": {t: {m: [asdict(x) for x in ss] for m, ss in per.items()} for t, per in KNOWN.samples.items()}}
    path = tmp_path / "old.json"
    path.write_text(json.dumps(old))
    assert load_table(path) == OutcomeTable.one_domain(DOMAIN, CHAIN, KNOWN.samples, {"k": 2})


def test_the_cache_name_encodes_the_task_set_and_k(tmp_path) -> None:
    chains = {DOMAIN: CHAIN}
    names = {cache_path(tmp_path, tasks, c, k).name for tasks, c, k in [
        (["a", "b"], chains, 2), (["a", "b", "c"], chains, 2), (["a", "b"], chains, 3),
        (["a", "b"], {DOMAIN: ("small",)}, 2)]}
    assert len(names) == 4
    assert cache_path(tmp_path, ["a", "b"], chains, 2) == cache_path(tmp_path, ["a", "b"], dict(chains), 2)


# -- several domains ----------------------------------------------------------------------

OTHER = "Tests/Docs"
LONG_CHAIN = ("tiny", "small", "big")
# Python/General (small -> big): small solves at once.  Tests/Docs (tiny -> small -> big): tiny never solves,
# small always does: after five Tests/Docs runs the gate opens for (Tests/Docs, small), off the route's start.
MIXED = OutcomeTable(
    {**{f"a{i}": DOMAIN for i in range(4)}, **{f"b{i}": OTHER for i in range(4)}},
    {DOMAIN: CHAIN, OTHER: LONG_CHAIN},
    {**{f"a{i}": {"small": (ok(2), ok(2)), "big": (ok(9), ok(9))} for i in range(4)},
     **{f"b{i}": {"tiny": (bad(1), bad(1)), "small": (ok(2), ok(2)), "big": (ok(9), ok(9))} for i in range(4)}})


def mixed_specs(table: OutcomeTable) -> dict[str, TaskSpec]:
    return {t: replace(spec(t), domain=table.domains[t]) for t in table.tasks}


def mixed_replay(table: OutcomeTable, stream: list[str], per_model=None) -> list[dict]:
    return comparison(replay(OptimizationConfig(), table, mixed_specs(table), stream, seed=1, floor=False,
                             per_model=per_model))


def test_each_task_runs_on_its_domains_chain() -> None:
    assert [s.model for s in simulate(MIXED, "b0", "tiny", STOPLOSS, BUDGET).stints] == ["tiny", "small"]
    assert [s.model for s in simulate(MIXED, "a0", "small", STOPLOSS, BUDGET).stints] == ["small"]
    assert MIXED.models == ["tiny", "small", "big"]
    static = replay_lane(Lane(PolicyArm(StaticPolicy()), StepClock()), MIXED, mixed_specs(MIXED), MIXED.tasks,
                         STOPLOSS, BUDGET)
    assert static.starts == {"small": 4, "tiny": 4}  # each route's start
    assert static.cost_s == pytest.approx(4 * 3 + 4 * (2 + 2 + 3))  # bad(1) takes 2 s, ok(2) 3 s
    assert {t: oracle_start(MIXED, t, STOPLOSS, BUDGET) for t in ("a0", "b0")} == {"a0": "small", "b0": "small"}


@pytest.mark.parametrize("seed", range(3))
def test_the_oracle_is_never_worse_than_any_policy_on_a_mixed_stream(seed: int) -> None:
    rng = random.Random(seed)

    def sample(p: float, gen: float) -> Sample:
        return Sample(rng.random() < p, 0.0, gen * rng.uniform(0.5, 1.5), test_s=0.5)

    rows = {**{f"a{i}": {m: (sample(p, g), sample(p, g)) for m, p, g in [("small", 0.4, 3), ("big", 0.6, 8)]}
               for i in range(8)},
            **{f"b{i}": {m: (sample(p, g), sample(p, g)) for m, p, g in
                         [("tiny", 0.2, 1), ("small", 0.5, 3), ("big", 0.6, 8)]} for i in range(8)}}
    table = OutcomeTable({t: DOMAIN if t[0] == "a" else OTHER for t in rows}, {DOMAIN: CHAIN, OTHER: LONG_CHAIN},
                         rows)
    results = {r["policy"]: r for r in mixed_replay(table, task_stream(table.tasks, 48, seed), {"small": 1})}
    oracle = results["oracle"]
    for r in results.values():
        assert (oracle["solved"], -oracle["cost_s"]) >= (r["solved"], -r["cost_s"])
        assert r["regret_solved"] >= 0


def test_the_gate_opens_for_the_domain_and_model_with_five_good_runs() -> None:
    stream = task_stream(MIXED.tasks, 24, seed=2)
    rows = mixed_replay(MIXED, stream)
    report = gate_report(rows)
    opened = {(g["domain"], g["model"]): g for g in report["opened"]}
    fifth = [i for i, t in enumerate(stream, 1) if t.startswith("b")][4]
    assert opened[(OTHER, "small")] == {"domain": OTHER, "model": "small", "after": fifth, "open_at_end": True,
                                        "route_start": False}
    assert opened[(DOMAIN, "small")]["route_start"] is True
    assert report["open_at_end"] == {DOMAIN: "small", OTHER: "small"}
    spec_row = next(r for r in rows if r["policy"] == "spec")
    later = sum(t.startswith("b") for t in stream[fifth:])  # every Tests/Docs task after the opening
    assert spec_row["learned"] == {"tasks": later, "solved": later, "cost_s": pytest.approx(3 * later),
                                   "static_solved": later, "static_cost_s": pytest.approx(7 * later),
                                   "saved_s": pytest.approx(4 * later)}
    lines = evidence_lines(rows)
    assert f"{OTHER} → small after task {fifth}" in lines[0]
    assert f"learned start, spec: {later} tasks off the route's start" in lines[1]
    assert f"saves {4 * later} s" in lines[1]


@pytest.mark.parametrize("rows, stream", [
    ({f"a{i}": {"small": (bad(1), bad(1)), "big": (ok(1) if i % 2 else bad(1), bad(1))} for i in range(4)}, 24),
    ({f"a{i}": {"small": (ok(1), ok(1)), "big": (ok(1), ok(1))} for i in range(4)}, 4),
])
def test_the_gate_stays_shut_below_the_rate_or_the_runs(rows, stream: int) -> None:
    table = OutcomeTable.one_domain(DOMAIN, CHAIN, rows)
    result = mixed_replay(table, task_stream(table.tasks, stream, seed=0))
    assert gate_report(result) is None
    assert evidence_lines(result)[0].endswith("under spec: never opened.")


def test_a_models_own_stoploss_shortens_its_stint() -> None:
    assert [(s.model, s.samples) for s in simulate(KNOWN, "retry", "small", STOPLOSS, BUDGET).stints] == \
        [("small", 2)]
    run = simulate(KNOWN, "retry", "small", STOPLOSS, BUDGET, per_model={"small": 1})
    assert [(s.model, s.samples) for s in run.stints] == [("small", 1), ("big", 1)]
    assert (run.solved, run.cost_s) == (True, pytest.approx(13))
    three = OutcomeTable.one_domain(DOMAIN, CHAIN, {"t": {"small": (bad(2), bad(2), ok(2)), "big": (ok(9),)}})
    assert simulate(three, "t", "small", STOPLOSS, BUDGET).stints[-1].model == "big"
    assert simulate(three, "t", "small", STOPLOSS, BUDGET, per_model={"small": 3}).cost_s == pytest.approx(9)
    assert oracle_start(KNOWN, "retry", STOPLOSS, BUDGET, per_model={"small": 1}) == "big"


def test_k_defaults_to_the_largest_stoploss_of_the_chains() -> None:
    inventory = load_inventory("embedded")
    chains = {d: inventory.route(d).chain for d in (DOMAIN, OTHER)}
    own = own_stoplosses(inventory, {m for c in chains.values() for m in c})
    assert own == {"qwen2.5-coder-0.5b": 1, "qwen2.5-coder-1.5b": 3}
    assert default_k(2, own, chains) == 3
    assert default_k(4, {}, chains) == 4


def test_the_mix_names_its_parts_and_leaves_cuda_out() -> None:
    tasks, title = mixed_tasks((0, 2), pack=True, testsdocs=TESTSDOCS_DIR)
    assert title == "HumanEval 0:2 + pack 7 + testsdocs 5"
    assert {t.domain for t in tasks} == {DOMAIN, "C++/System", "Audio/DSP", OTHER}
    assert not any(t.language == "cuda" for t in tasks)
    assert mixed_tasks(None, testsdocs=TESTSDOCS_DIR)[1] == "testsdocs 5"


def test_cli_replays_from_the_cache_without_a_model(tmp_path, monkeypatch) -> None:
    for name in [n for n in os.environ if n.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    inventory = load_inventory("embedded")
    tasks, _ = mixed_tasks((0, 3), testsdocs=TESTSDOCS_DIR)
    chains = {t.domain: inventory.route(t.domain).chain for t in tasks}
    small, big = "qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"
    rows = {f"HumanEval_{i}": {small: (bad(2), ok(2) if i else bad(2), ok(2)), big: (ok(5), ok(5), ok(5))}
            for i in range(3)}
    rows |= {t.id: {"smollm2-135m": (bad(1),) * 3, small: (ok(2),) * 3, big: (ok(5),) * 3}
             for t in tasks if t.domain == OTHER}
    table = OutcomeTable({t.id: t.domain for t in tasks}, chains, rows)
    save_table(table, cache_path(home, [t.id for t in tasks], chains, 3))
    cli_main._register_commands()
    result = CliRunner().invoke(cli_main.cli, ["--home", str(home), "bench", "routing", "--range", "0:3",
                                               "--testsdocs", "--stream-length", "32", "--shuffle-seed", "5"])
    assert result.exit_code == 0, result.output
    assert "reusing recorded outcomes" in result.output
    assert "HumanEval 0:3 + testsdocs 5" in result.output
    for policy in ("static", "spec", "thompson", "oracle"):
        assert policy in result.output
    out = next((home / "bench").glob("routing-replay-*-k3-n32-seed5.json"))
    data = json.loads(out.read_text())
    assert [p["policy"] for p in data["policies"]] == ["static", "spec", "thompson", "oracle"]
    static = data["policies"][0]
    assert static["solved"] == 32  # the 0.5B's own stop-loss of 1 sends HumanEval_1 and _2 on to the 1.5B
    assert static["starts"] == {small: sum(static["starts"].values()) - static["starts"]["smollm2-135m"],
                                "smollm2-135m": static["starts"]["smollm2-135m"]}
    assert data["stoploss_own"] == {small: 1, big: 3}
    assert data["gate"]["open_at_end"][OTHER] == small  # SmolLM2 never solves, the 0.5B always does
    assert "evidence gate" in result.output and "learned start, spec" in result.output


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
