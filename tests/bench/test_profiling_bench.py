"""`bench profiling` at a tiny size: both arms on the same builds, regressions caught."""

from __future__ import annotations

import json

from click.testing import CliRunner

from kisystem.bench.profiling import run_profiling_bench, slowed, versions
from kisystem.cli import main as cli_main
from kisystem.loop.profiling import detect_tools


def test_the_scripted_run_has_ten_iterations_or_more_and_injected_regressions():
    steps = versions()
    assert len(steps) >= 10 and sum(v.injected for v in steps) == 2
    assert slowed(steps[0], 2).code.count("matmul_once(") == 2


async def test_two_tier_profiles_less_and_catches_the_injected_regression(tmp_path):
    result = await run_profiling_bench(iterations=6, size=224, workdir=tmp_path)
    assert len(result.rows) == 6 and result.injected == 1
    injected = result.rows[5]
    assert injected.version.injected and injected.two_tier.regression and injected.always_full.regression
    assert all(r.always_full.reason == "always full" for r in result.rows)
    assert result.rows[0].two_tier.reason == "baseline"
    assert {"cpu_s", "reference_cpu_s", "best_wall_s", "reference_best_wall_s"} <= set(result.rows[0].two_tier.metrics)
    if detect_tools().valgrind:
        assert result.caught("two_tier") == result.caught("always_full") == 1
        assert result.two_tier.tier1_count < result.always_full.tier1_count == 6  # the saving, not timed here
    data = json.loads(result.to_json())
    assert data["iterations"] == 6 and len(data["rows"]) == 6 and "saving" in data


def test_cli_runs_the_bench_and_saves_its_figures(tmp_path):
    cli_main._register_commands()
    out = CliRunner().invoke(cli_main.cli, ["--home", str(tmp_path), "bench", "profiling",
                                            "--iterations", "2", "--size", "16", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output[out.output.index("{"):])
    assert data["iterations"] == 2 and list((tmp_path / "bench").glob("profiling-*.json"))
