"""`bench executors` at a tiny size: the figures are computed from complete runs (the times are not checked)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from kisystem.bench.executors import (
    BenchSettings,
    ideal_wall_s,
    parse_sizes,
    run_bench,
    sim_tasks,
    simulated_seconds,
    task_spec,
)
from kisystem.bench.queue import SimTask
from kisystem.cli import main as cli_main
from kisystem.errors import UsageError
from kisystem.loop.prompts import chat_messages
from kisystem.models.base import GenerationRequest


def test_the_durations_are_seeded_and_the_first_tasks_alike_at_every_count() -> None:
    few, many = sim_tasks(5, 0.5, seed=3), sim_tasks(500, 0.5, seed=3)
    assert few == many[:5] and few != sim_tasks(5, 0.5, seed=4)
    assert 0.4 < sum(t.duration for t in many) / 500 < 0.6


def test_the_ideal_is_the_list_schedule_of_the_durations_on_the_slots() -> None:
    jobs = [SimTask(i, "d", "m", None, d) for i, d in enumerate((1.0, 2.0, 3.0, 1.0))]
    assert ideal_wall_s(jobs, 2) == 4.0  # slot a: 1 then 3; slot b: 2 then 1
    assert ideal_wall_s(jobs, 1) == 7.0 and ideal_wall_s(jobs, 4) == 3.0


def test_the_model_sleeps_the_time_its_task_names() -> None:
    spec = task_spec(SimTask(7, "Python/General", "sim", None, 0.123))
    assert spec.id == "sim-00007" and spec.test.command == "true" and spec.build is None
    request = GenerationRequest(model="sim", messages=chat_messages(spec))
    assert simulated_seconds(request) == 0.123


def test_bad_task_counts_are_a_usage_error() -> None:
    assert parse_sizes("200, 2000") == (200, 2000)
    for bad in ("", "0", "a,2", "200,-1"):
        with pytest.raises(UsageError):
            parse_sizes(bad)
    with pytest.raises(UsageError, match="at least 2 with the ray executor"):
        BenchSettings(slots=1)


def test_cli_runs_the_local_executor_and_saves_its_figures(tmp_path: Path) -> None:
    cli_main._register_commands()
    out = CliRunner().invoke(cli_main.cli, ["--home", str(tmp_path), "bench", "executors", "--tasks", "3,6",
                                            "--executor", "local", "--slots", "2", "--mean", "0.05"])
    assert out.exit_code == 0, out.output
    [saved] = (tmp_path / "bench").glob("executors-*.json")
    data = json.loads(saved.read_text())
    assert [(r["executor"], r["tasks"], r["succeeded"], r["generated"]) for r in data["runs"]] == [
        ("local", 3, 3, 3), ("local", 6, 6, 6)]
    for run in data["runs"]:
        durations = [t.duration for t in sim_tasks(run["tasks"], 0.05)]
        assert run["ideal_s"] == pytest.approx(ideal_wall_s(sim_tasks(run["tasks"], 0.05), 2))
        assert run["wall_s"] >= sum(durations) / 2 and math.isfinite(run["overhead_per_task_s"])
        assert run["throughput"] == pytest.approx(run["tasks"] / run["wall_s"])
    assert math.isfinite(data["overhead_growth"]["local"]) and data["ratios"] == {"3": None, "6": None}
    assert "overhead/task" in out.output and "local: overhead per task at 6 tasks is" in out.output


@pytest.mark.timeout(240)
async def test_both_executors_on_two_local_ray_nodes(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("this test process is already connected to another Ray cluster")
    settings = BenchSettings((4,), slots=2, mean_s=0.3, warmup=2, port_base=18600)
    result = await run_bench(settings, tmp_path)
    assert [(r.executor, r.tasks, r.succeeded, r.generated) for r in result.runs] == [("local", 4, 4, 4),
                                                                                      ("ray", 4, 4, 4)]
    ray_run = result.run("ray", 4)
    assert sum(ray_run.per_node.values()) == 4 and set(ray_run.per_node) == set(result.cluster["slots"])  # both nodes
    ratios = result.ratios(4)
    assert all(math.isfinite(v) and v > 0 for v in ratios.values())
    assert not ray.is_initialized()  # the bench left the cluster and stopped it
