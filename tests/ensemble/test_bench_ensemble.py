"""`bench ensemble`'s figures and table from scripted models on virtual time and from recorded totals
(the benchmark itself needs real models and is not run here)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from rich.console import Console

from kisystem.bench.cache import BenchCache, CachedGenerator
from kisystem.bench.ensemble import (
    ADAPTIVE,
    FULL,
    SINGLE,
    ArmTotals,
    EnsembleBench,
    Outcome,
    Paced,
    ProgressFile,
    best_single,
    table,
    verdict,
)
from kisystem.models.base import Generation, GenerationRequest
from kisystem.paths import Paths
from tests.ensemble.judging import TASK, ScriptedJudging, config, fleet
from tests.ensemble.scripted import ScriptedGenerator, run_virtual


def test_one_problem_runs_the_singles_the_full_and_the_adaptive_ensemble(tmp_path) -> None:
    """m1 (10 s) half right, m2 (15 s) right; two generations per endpoint at once.  The full
    ensemble waits for all six members (30 s); the adaptive one (the same six here) stops when m2's
    first answers pass at 15 s, dropping m1's third sample after 5 s and m2's third before it began."""
    cfg = config(simple_members=12, expert_members=12)
    inventory = fleet(2)
    gen = ScriptedGenerator({"m1": (10.0, "HALF"), "m2": (15.0, "RIGHT")})
    sup = SimpleNamespace(config=cfg, inventory=inventory, generator=gen, attempts=ScriptedJudging(tmp_path / "ws"),
                          available={"m1", "m2"})
    bench = EnsembleBench(cfg, inventory, Paths.resolve(tmp_path / "home"), tmp_path / "answers.db",
                          tmp_path / "progress.jsonl")
    cache = BenchCache(tmp_path / "answers.db")
    try:
        out = run_virtual(bench.problem(sup, cache, TASK, ["m1", "m2"]))  # type: ignore[arg-type]
    finally:
        cache.close()
    assert out[SINGLE + "m1"] == Outcome(solved=False, wall_s=10.5, model_s=10.0, members=1, serial_s=10.0)
    assert out[SINGLE + "m2"].solved and out[SINGLE + "m2"].model_s == 15.0
    full, adaptive = out[FULL], out[ADAPTIVE]
    assert (full.solved, full.members, full.dropped, full.fanout_wall_s, full.model_s, full.serial_s) == (
        True, 6, 0, 30.0, 75.0, 75.0)
    assert full.tier == "expert" and full.wall_s == 30.0 and full.blind is False  # by agreement: the first HALF
    assert (adaptive.solved, adaptive.members, adaptive.dropped, adaptive.fanout_wall_s) == (True, 6, 2, 15.0)
    assert adaptive.model_s == 55.0  # 2 x 10 + 2 x 15 + the 5 s m1's third sample ran
    assert adaptive.saved_s == 20.0  # (10 - 5) + (15 - 0)
    assert adaptive.serial_s == 55.0 and adaptive.tier == "simple"


def totals() -> list[ArmTotals]:
    return [ArmTotals(SINGLE + "small", problems=10, solved=4, model_s=60.0, members=10),
            ArmTotals(SINGLE + "big", problems=10, solved=7, model_s=300.0, members=10),
            ArmTotals(FULL, problems=10, solved=9, blind=7, model_s=1200.0, members=90, fanout_wall_s=400.0,
                      serial_s=1200.0),
            ArmTotals(ADAPTIVE, problems=10, solved=8, blind=7, model_s=240.0, members=40, dropped=12,
                      early_stops=6, saved_s=150.0, fanout_wall_s=120.0, serial_s=240.0)]


def test_totals_add_up_and_round_trip() -> None:
    arm = ArmTotals(ADAPTIVE)
    arm.add("a", Outcome(solved=True, blind=False, model_s=30.0, dropped=2, saved_s=5.0, fanout_wall_s=10.0,
                         serial_s=40.0, tier="medium"))
    arm.add("b", Outcome(solved=False, blind=True, model_s=30.0, fanout_wall_s=10.0, serial_s=20.0, tier="medium"))
    assert (arm.problems, arm.solved, arm.blind, arm.early_stops, arm.dropped, arm.solved_ids) == (2, 1, 1, 1, 2, ["a"])
    assert arm.solved_per_model_minute == 1.0 and arm.speedup == 3.0 and arm.tiers == {"medium": 2}
    assert ArmTotals.from_dict(arm.to_dict()) == arm


def test_the_best_single_model_and_the_verdict_on_solved_per_model_minute() -> None:
    arms = totals()
    assert best_single(arms).arm == SINGLE + "big"  # most solved, not the cheapest
    assert verdict(arms) == [
        ("The adaptive ensemble beats single big on solved per model-minute (2.00 against 1.40); it solved 8/10 "
         "against 7/10."),
        ("The adaptive ensemble does not beat single small on solved per model-minute (2.00 against 4.00); it "
         "solved 8/10 against 4/10."),
        ("The adaptive ensemble beats full ensemble on solved per model-minute (2.00 against 0.45); it solved 8/10 "
         "against 9/10.")]
    arms[:2] = [ArmTotals(SINGLE + "big", problems=10, solved=8, model_s=100.0)]
    assert len(verdict(arms)) == 2
    assert verdict(arms)[0] == ("The adaptive ensemble does not beat single big on solved per model-minute "
                                "(2.00 against 4.80); it solved 8/10 against 8/10.")


def test_the_table_marks_the_best_single_and_shows_the_fan_out_against_serial() -> None:
    console = Console(record=True, width=200)
    console.print(table(totals(), "Ensembles"))
    text = console.export_text()
    assert "single big *" in text and "single small *" not in text
    adaptive = next(line for line in text.splitlines() if "adaptive ensemble" in line)
    for cell in ("8/10", "7/10", "240 s", "2.00", "120 s", "6 (12)", "150 s"):
        assert cell in adaptive


def test_the_progress_file_resumes_only_problems_of_the_same_fleet(tmp_path) -> None:
    path = tmp_path / "p.jsonl"
    ProgressFile(path, ["a", "b"]).add("HumanEval_0", {FULL: Outcome(solved=True, model_s=3.0)})
    ProgressFile(path, ["a"]).add("HumanEval_1", {FULL: Outcome()})
    with path.open("a") as fh:
        fh.write('{"task": "HumanEval_2", "fle')  # cut off by an interruption
    assert ProgressFile(path, ["a", "b"]).done() == {"HumanEval_0": {FULL: Outcome(solved=True, model_s=3.0)}}


def test_a_cached_answer_takes_its_recorded_time_again(tmp_path) -> None:
    cache = BenchCache(tmp_path / "answers.db")
    hit = GenerationRequest(model="m1", prompt="seen")
    cache.keep_answer(hit, Generation(text="old", model="m1", total_s=7.0))
    paced = Paced(CachedGenerator(ScriptedGenerator({"m1": (2.0, "new")}), cache), cache)

    async def timed(request: GenerationRequest) -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        started = loop.time()
        answer = await paced.generate(request)
        return answer.text, loop.time() - started

    try:
        assert run_virtual(timed(hit)) == ("old", 7.0)
        assert run_virtual(timed(GenerationRequest(model="m1", prompt="new"))) == ("new", 2.0)
    finally:
        cache.close()


SOLUTION = '''```python
def has_close_elements(numbers, threshold):
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)
```'''


def test_the_bench_command_on_a_fake_server_writes_its_results_and_resumes(tmp_path, httpserver) -> None:
    """One model, one sample: every arm asks it once (the full ensemble's request is the single shot's,
    so the answer cache pays it once); a second run resumes from the progress file and asks nobody."""
    import json

    from tests.cli.support import kisystem, local_home, sse_answer

    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "bench-ens"}]})
    httpserver.expect_request("/v1/chat/completions").respond_with_data(sse_answer(SOLUTION),
                                                                        content_type="text/event-stream")
    home = local_home(tmp_path / "home", httpserver.url_for(""), {"bench-ens": ""}, "bench-ens")
    env = {"KISYSTEM_ENSEMBLE__MAX_SAMPLES_PER_MODEL": "1"}
    proc = kisystem(home, "bench", "ensemble", "--range", "0:1", env=env, timeout=180)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((home / "bench" / "ensemble-0-1.json").read_text())
    arms = {a["arm"]: a for a in result["arms"]}
    assert set(arms) == {"single bench-ens", FULL, ADAPTIVE} and result["fleet"] == ["bench-ens"]
    assert all(a["solved"] == 1 and a["members"] == 1 for a in arms.values())
    assert arms[FULL]["blind"] == 1 and "single bench-ens *" in proc.stdout
    print(proc.stdout)
    asked = sum(entry.path == "/v1/chat/completions" for entry, _ in httpserver.log)
    assert asked == 1
    again = kisystem(home, "bench", "ensemble", "--range", "0:1", env=env, timeout=180)
    assert again.returncode == 0, again.stderr
    assert "(recorded earlier)" in again.stderr
    assert sum(entry.path == "/v1/chat/completions" for entry, _ in httpserver.log) == asked
