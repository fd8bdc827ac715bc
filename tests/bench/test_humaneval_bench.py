"""bench humaneval's arms on a real judged task with a scripted model: budgets, caching, resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from kisystem.bench.cache import BenchCache, CachedAttempts, CachedGenerator
from kisystem.bench.humaneval import LOOP, HumanEvalBench, arm_names
from kisystem.config import OptimizationConfig
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import load_task
from kisystem.models.base import Generation, GenerationRequest
from kisystem.paths import Paths
from kisystem.store.learning import LearningStore
from tests.loop.test_supervisor import GOOD, INVENTORY, WRONG

ADD = Path(__file__).parents[2] / "examples" / "judged" / "add.toml"
LADDER = ("small", "medium")
INV = replace(INVENTORY, models={n: INVENTORY.models[n] for n in LADDER},
              routes={"Python/General": replace(INVENTORY.routes["Python/General"], escalation=("medium",))})


class TimedModel:
    """Each model answers from its own list of (text, seconds), in order."""

    def __init__(self, script: dict[str, list[tuple[str, float]]]) -> None:
        self.script = {m: list(a) for m, a in script.items()}
        self.requests: list[GenerationRequest] = []

    async def generate(self, request: GenerationRequest, on_text=None) -> Generation:
        self.requests.append(request)
        if not self.script.get(request.model):
            raise AssertionError(f"no answer left for {request.model}")
        text, seconds = self.script[request.model].pop(0)
        return Generation(text=text, model=request.model, prompt_tokens=10, completion_tokens=5, total_s=seconds)


def session(tmp_path: Path, store: LearningStore, model, cache: BenchCache):
    cfg = replace(OptimizationConfig(), stoploss_per_model=1, max_optimization_iterations=4)
    attempts = CachedAttempts(AttemptRunner(PhaseRunner(cfg), tmp_path / "ws"), cache)
    sup = Supervisor(cfg, INV, CachedGenerator(model, cache), store, attempts)
    return HumanEvalBench(cfg, INV, Paths.resolve(tmp_path / "home"), tmp_path / "cache.db"), sup


@pytest.fixture
def store(tmp_path):
    with LearningStore.open(tmp_path / "runs.db") as s:
        yield s


async def test_each_arm_spends_what_the_loop_spent(tmp_path, store) -> None:
    # The loop: small fails (4 s), medium solves (6 s): 10 model-seconds, 4 on small and 6 on medium.
    model = TimedModel({"small": [(WRONG, 4.0), (WRONG, 3.0), (WRONG, 3.0), (GOOD, 3.0), (WRONG, 2.0)],
                        "medium": [(GOOD, 6.0), (WRONG, 5.0)]})
    cache = BenchCache(tmp_path / "cache.db")
    bench, sup = session(tmp_path, store, model, cache)
    out = await bench.problem(sup, load_task(ADD), LADDER)
    assert list(out) == arm_names(LADDER)
    loop = out[LOOP]
    assert (loop.solved, loop.attempts, loop.model_s, loop.by_model) == (True, 2, 10.0, {"small": 4.0, "medium": 6.0})
    assert not out["single small"].solved and out["single small"].model_s == 4.0  # the loop's first answer, cached
    assert out["single medium"].solved and out["single medium"].attempts == 1
    # resample small: greedy (cached, 4 s) + 3 s + 3 s = 10 >= 10: the fourth sample (GOOD) is never drawn
    resample_small = out["resample small"]
    assert (resample_small.solved, resample_small.attempts, resample_small.model_s) == (False, 3, 10.0)
    assert out["resample medium"].solved and out["resample medium"].attempts == 1
    # the ladder spends 4 s on small (its greedy answer only), then medium's greedy answer solves
    ladder = out["resample ladder"]
    assert (ladder.solved, ladder.attempts, ladder.by_model) == (True, 2, {"small": 4.0, "medium": 6.0})
    resamples = [r for r in model.requests if r.model == "small" and r.temperature > 0]
    assert [r.seed for r in resamples] == [1, 2]  # seeded, and the same seeds are reused from the cache
    assert all(r.messages == model.requests[0].messages for r in resamples)  # never any feedback
    cache.close()


async def test_a_rerun_answers_from_the_cache_and_reports_the_recorded_time(tmp_path, store) -> None:
    model = TimedModel({"small": [(WRONG, 4.0), (WRONG, 3.0), (WRONG, 3.0)], "medium": [(GOOD, 6.0)]})
    cache = BenchCache(tmp_path / "cache.db")
    bench, sup = session(tmp_path, store, model, cache)
    first = await bench.problem(sup, load_task(ADD), LADDER)
    cache.close()

    cache = BenchCache(tmp_path / "cache.db")
    bench, sup = session(tmp_path, store, TimedModel({}), cache)  # any generation would fail the test
    again = await bench.problem(sup, load_task(ADD), LADDER)
    assert cache.misses == 0 and cache.hits > 0
    for arm in first:
        assert (again[arm].solved, again[arm].attempts, again[arm].model_s) == \
               (first[arm].solved, first[arm].attempts, first[arm].model_s)
    assert again[LOOP].wall_s >= again[LOOP].model_s  # the replayed generation counts as time spent
    cache.close()


async def test_loop_only_runs_the_loop_arm_and_nothing_else(tmp_path, store) -> None:
    model = TimedModel({"small": [(WRONG, 4.0)], "medium": [(GOOD, 6.0)]})  # any other request fails the test
    cache = BenchCache(tmp_path / "cache.db")
    bench, sup = session(tmp_path, store, model, cache)
    bench.loop_only = True
    out = await bench.problem(sup, load_task(ADD), LADDER)
    assert list(out) == [LOOP] and out[LOOP].solved and len(model.requests) == 2
    cache.close()


def test_resampling_stops_at_the_sample_count_nearest_the_loops_spend() -> None:
    from kisystem.bench.humaneval import _closer

    assert not _closer(4.0, 1, 5.0)  # a second 4 s sample would end at 8: 3 over, against 1 under now
    assert _closer(4.0, 1, 7.0)  # ... at 8: 1 over, against 3 under now
    assert not _closer(10.0, 2, 10.0)


def test_a_cached_verdict_is_not_reused_once_the_judging_code_changed(tmp_path, monkeypatch) -> None:
    from kisystem.bench import cache as cache_module
    from kisystem.loop.attempt import Attempt

    cache = BenchCache(tmp_path / "cache.db")
    task, request = load_task(ADD), GenerationRequest(model="small", messages=[{"role": "user", "content": "x"}])
    cache.keep_attempt(task, request, Attempt(model="small", score=100.0, code="def add(a, b): return a + b"))
    assert cache.attempt(task, request).score == 100.0
    monkeypatch.setattr(cache_module, "judging_version", lambda: "changed")
    assert cache.attempt(task, request) is None
    cache.close()


def _piece(start: int, stop: int, solved: list[str], ladder=("a", "b")) -> dict:
    arms = [{"arm": "loop", "solved": len(solved), "problems": stop - start, "attempts": 2 * (stop - start),
             "tokens": 100, "model_s": 10.0, "wall_s": 12.0, "solved_ids": solved, "solved_per_model_minute": 1.0}]
    return {"range": [start, stop], "ladder": list(ladder), "arms": arms}


def test_pieces_merge_into_one_sum_and_must_join_up():
    from kisystem.bench.humaneval import merge_pieces
    from kisystem.errors import UsageError

    merged = merge_pieces([_piece(122, 164, ["HumanEval_130"]), _piece(80, 122, ["HumanEval_80", "HumanEval_81"])])
    assert merged["range"] == [80, 164] and merged["pieces"] == [[80, 122], [122, 164]]
    (loop,) = merged["arms"]
    assert (loop["solved"], loop["problems"], loop["attempts"], loop["model_s"]) == (3, 84, 168, 20.0)
    assert loop["solved_ids"] == ["HumanEval_80", "HumanEval_81", "HumanEval_130"]
    with pytest.raises(UsageError, match="do not join up"):
        merge_pieces([_piece(80, 120, []), _piece(122, 164, [])])
    with pytest.raises(UsageError, match="different ladders"):
        merge_pieces([_piece(80, 122, []), _piece(122, 164, [], ladder=("a",))])


def test_humaneval_merge_command_prints_and_writes_the_sum(tmp_path):
    from click.testing import CliRunner

    from kisystem.cli import main as cli_main

    cli_main._register_commands()
    a, b = tmp_path / "humaneval-80-122.json", tmp_path / "humaneval-122-164.json"
    a.write_text(json.dumps(_piece(80, 122, ["HumanEval_80"])))
    b.write_text(json.dumps(_piece(122, 164, ["HumanEval_150"])))
    result = CliRunner().invoke(cli_main.cli, ["--home", str(tmp_path / "home"), "bench", "humaneval-merge",
                                               str(a), str(b)])
    assert result.exit_code == 0, result.output
    assert "HumanEval 80:164" in result.output and "2/84" in result.output
    assert json.loads((tmp_path / "humaneval-80-164.json").read_text())["arms"][0]["solved"] == 2
