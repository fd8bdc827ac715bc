"""Two-tier profiling: parsers, the trigger, the regression check, statistics, and the
profiler on real compiled code through the real sandboxed phases."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from kisystem.cli import main as cli_main
from kisystem.config import OptimizationConfig, TwoTierProfiling
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.categorizer import Phase
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.profiling import (
    Hotspot,
    Microbench,
    ProfileRecord,
    ProfileResult,
    TimeSavings,
    Tools,
    TwoTierProfiler,
    parse_bench_lines,
    parse_callgrind,
    parse_cprofile,
    parse_ncu,
    parse_nsys,
    parse_perf_stat,
    regression_check,
    tier1_command,
)
from kisystem.loop.scoring import PerformanceParser, ScoreInput
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import PhaseSpec, ProfileSpec, TaskSpec
from kisystem.loop.workspace import Workspace
from kisystem.models.inventory import parse_inventory
from kisystem.store.learning import LearningStore, RunResult
from tests.loop.fakes import ScriptedModel

HAVE_VALGRIND = shutil.which("valgrind") is not None

# --- parsers --------------------------------------------------------------------------------

CALLGRIND = """# callgrind format
version: 1
positions: line
events: Ir Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw
summary: 1000 0 0 0 0 0 0 0 0

fl=(1) /w/solution.c
fn=(1) work
3 600 0 0 0 40 2 0 1 1
+1 100
fn=(2) kisystem_bench_candidate
fi=(2) /w/bench.c
9 5
cfn=(1)
calls=1 -6
* 700 0 0 0 40 2 0 1 1
fn=(3) kisystem_bench_reference
10 5
cfn=(4) ref_work
calls=1 +1
* 200
fn=(4)
11 200
"""


def test_callgrind_counts_candidate_and_reference_roots_and_hot_lines():
    report = parse_callgrind(CALLGRIND)
    assert report.metrics["instructions"] == 705
    assert report.metrics["reference_instructions"] == 205
    assert report.metrics["l1_misses"] == 42 and report.metrics["ll_misses"] == 2
    names = [h.name for h in report.hotspots]
    assert names[0] == "solution.c:3 in work" and names[1] == "solution.c:4 in work"
    assert report.hotspots[0].share == pytest.approx(600 / 705)


def test_callgrind_without_roots_reports_the_whole_program():
    report = parse_callgrind(CALLGRIND.replace("kisystem_bench_candidate", "main"))
    assert report.metrics["instructions"] == 1000


@pytest.mark.skipif(not HAVE_VALGRIND, reason="valgrind not installed")
def test_callgrind_parses_real_output(tmp_path):
    source = tmp_path / "p.c"
    source.write_text("__attribute__((noinline)) void spin(long n) { volatile long s = 0; "
                      "for (long i = 0; i < n; i++) s += i; }\n"
                      "__attribute__((noinline)) void kisystem_bench_candidate(void) { spin(30000); }\n"
                      "__attribute__((noinline)) void kisystem_bench_reference(void) { spin(10000); }\n"
                      "int main(void) { kisystem_bench_candidate(); kisystem_bench_reference(); return 0; }\n")
    subprocess.run(["gcc", "-O1", "-g", "-o", tmp_path / "p", source], check=True)
    subprocess.run(["valgrind", "--tool=callgrind", "--cache-sim=yes", f"--callgrind-out-file={tmp_path}/cg.out",
                    str(tmp_path / "p")], check=True, capture_output=True)
    metrics = parse_callgrind((tmp_path / "cg.out").read_text()).metrics
    assert 2.5 < metrics["instructions"] / metrics["reference_instructions"] < 3.5
    assert "l1_misses" in metrics


def test_perf_stat_leaves_out_counters_the_kernel_did_not_count():
    text = ("<not supported>,,instructions:u,0,100.00,,\n"
            "1234567,,cycles:u,1000,100.00,,\n"
            "12.5,msec,task-clock:u,12500000,100.00,0.98,CPUs utilized\n")
    assert parse_perf_stat(text).metrics == {"perf_cycles": 1234567.0, "perf_task_clock_s": 0.0125}


def test_cprofile_parses_real_output(tmp_path):
    script = tmp_path / "bench.py"
    script.write_text("def work(n):\n    return sum(i * i for i in range(n))\n"
                      "def kisystem_bench_candidate():\n    work(200000)\n"
                      "def kisystem_bench_reference():\n    work(50000)\n"
                      "kisystem_bench_candidate()\nkisystem_bench_reference()\n")
    out = subprocess.run([sys.executable, "-m", "cProfile", "-s", "tottime", str(script)],
                         capture_output=True, text=True, check=True).stdout
    report = parse_cprofile(out)
    assert report.metrics["function_calls"] > 100
    assert report.metrics["profiled_s"] > report.metrics["reference_profiled_s"] > 0
    assert report.hotspots


NSYS = """Generating SQLite file /w/.kisystem-profile/nsys.sqlite
"Time (%)","Total Time (ns)","Instances","Avg (ns)","Med (ns)","Min (ns)","Max (ns)","StdDev (ns)","Name"
90.0,9000000,2,4500000.0,4500000.0,4400000,4600000,141421.4,"add_all(const float *, int, float *)"
8.0,800000,2,400000.0,400000.0,390000,410000,14142.1,"ref_partial_sums(const float *, int, float *)"
2.0,200000,2,100000.0,100000.0,90000,110000,14142.1,"ref_final_sum(const float *, int, float *)"
"""


def test_nsys_kernel_summary_splits_candidate_and_reference_kernels():
    report = parse_nsys(NSYS)
    assert report.metrics["kernel_time_s"] == pytest.approx(9e-3)
    assert report.metrics["reference_kernel_time_s"] == pytest.approx(1e-3)
    assert report.metrics["kernel_launches"] == 6
    assert report.hotspots[0].name == "add_all" and report.hotspots[0].share == pytest.approx(1.0)


_NCU_HEAD = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size",'
             '"Grid Size","Device","CC","Section Name","Metric Name","Metric Unit","Metric Value"')


def _ncu_row(launch: int, kernel: str, metric: str, unit: str, value: str) -> str:
    return (f'"{launch}","42","bench_bin","h","{kernel}","1","7","(256, 1, 1)","(1024, 1, 1)","0","9.0",'
            f'"Command line profiler metrics","{metric}","{unit}","{value}"')


NCU = "\n".join([
    "==PROF== Connected to process 42 (/w/bench_bin)", _NCU_HEAD,
    _ncu_row(0, "add_all", "gpu__time_duration.sum", "msecond", "2.50"),
    _ncu_row(0, "add_all", "sm__warps_active.avg.pct_of_peak_sustained_active", "%", "80"),
    _ncu_row(0, "add_all", "dram__throughput.avg.pct_of_peak_sustained_elapsed", "%", "10"),
    _ncu_row(1, "add_all", "gpu__time_duration.sum", "usecond", "2,500.00"),
    _ncu_row(1, "add_all", "sm__warps_active.avg.pct_of_peak_sustained_active", "%", "40"),
    _ncu_row(1, "add_all", "dram__throughput.avg.pct_of_peak_sustained_elapsed", "%", "30"),
    _ncu_row(2, "void ref_partial_sums(const float *, int, float *)", "gpu__time_duration.sum", "nsecond", "30,000"),
])


def test_ncu_csv_gives_kernel_time_occupancy_and_throughput():
    m = parse_ncu(NCU).metrics
    assert m["kernel_time_s"] == pytest.approx(5e-3)
    assert m["reference_kernel_time_s"] == pytest.approx(30e-6)
    assert m["occupancy_pct"] == pytest.approx(60) and m["memory_throughput_pct"] == pytest.approx(20)


def test_score_uses_the_reference_timed_in_the_same_run_else_the_static_one():
    same_run = {"best_wall_s": 0.02, "wall_s": 0.03, "reference_best_wall_s": 0.01, "reference_wall_s": 0.05}
    score = ScoreInput.from_metrics(build_ok=True, test_ok=True, test_output="", metrics=same_run,
                                    reference_time_s=1.0)
    assert (score.measured_time_s, score.reference_time_s) == (0.02, 0.01)
    assert PerformanceParser().score(score) == 90.0
    alone = ScoreInput.from_metrics(build_ok=True, test_ok=True, test_output="", metrics={"wall_s": 0.5},
                                    reference_time_s=0.25)
    assert (alone.measured_time_s, alone.reference_time_s) == (0.5, 0.25)
    nothing = ScoreInput.from_metrics(build_ok=True, test_ok=True, test_output="", metrics={}, reference_time_s=0.1)
    assert PerformanceParser().score(nothing) == 80.0  # a reference but no measurement: no speed points


def test_performance_parser_exposes_the_tool_parsers():
    assert PerformanceParser().parse_metrics("nsys", NSYS)["kernel_time_s"] == pytest.approx(9e-3)


def test_tier1_commands_wrap_shell_commands_and_refuse_what_they_cannot_profile():
    assert "valgrind --tool=callgrind" in tier1_command("callgrind", "./bench_bin")
    wrapped = tier1_command("callgrind", "cd x && ./bench_bin", Path("/w/out"))
    assert "--trace-children=yes --callgrind-out-file=/w/out/callgrind.%p.out" in wrapped
    assert wrapped.endswith("/bin/sh -c 'cd x && ./bench_bin'")
    assert "-m cProfile" in tier1_command("cprofile", "python bench.py --fast")
    assert tier1_command("cprofile", "python -c 'print(1)'") is None


def test_tools_pick_profilers_by_language():
    tools = Tools(valgrind=True, perf_counters=False, nsys=True, ncu=True, gpu=False)
    assert tools.full_profilers("cpp") == ("callgrind",)
    assert tools.full_profilers("cuda") == ()  # no GPU: CUDA programs are not run at all
    assert replace(tools, gpu=True).full_profilers("cuda") == ("ncu", "nsys")
    assert tools.full_profilers("python") == ("cprofile",)


# --- microbenchmark, regressions, trigger -------------------------------------------------------


def test_bench_lines_give_medians_fastest_rounds_and_noise():
    out = "seed=1\n" + "".join(f"KISYSTEM_BENCH rep={i} candidate_s={c} reference_s={r}\n"
                               for i, (c, r) in enumerate([(2.0, 1.0), (2.2, 1.0), (9.0, 1.1), (2.1, 1.0)]))
    bench = Microbench.from_samples(*parse_bench_lines(out))
    assert bench.candidate_s == pytest.approx(2.15) and bench.best_s == 2.0 and bench.reference_best_s == 1.0
    assert bench.value == pytest.approx(2.0) and bench.runs == 4 and bench.noise > 0
    assert ScoreInput.from_metrics(build_ok=True, test_ok=True, test_output="", metrics=bench.metrics()
                                   ).measured_time_s == 2.0


def _bench(value: float, spread: float = 0.0) -> Microbench:
    """Nine rounds whose fastest ratio to the reference is ``value``, the others ``spread`` apart."""
    return Microbench.from_samples([value * (1 + spread * (i % 3)) for i in range(9)], [1.0] * 9)


def test_regression_check_allows_for_noise_but_always_catches_big_slowdowns():
    assert regression_check(None, _bench(3.0)) == (False, None)
    assert regression_check(_bench(1.0), _bench(1.1))[0] is False  # under the 15 % floor
    assert regression_check(_bench(1.0), _bench(1.3))[0] is True
    assert _bench(1.0, 0.5).noise > 0.4
    assert regression_check(_bench(1.0, 0.5), _bench(1.3, 0.5))[0] is False  # within the noise
    assert regression_check(_bench(1.0, 5.0), _bench(1.6, 5.0))[0] is True  # past the 1.5x cap
    assert regression_check(Microbench.from_samples([1.0]), _bench(2.0))[0] is False  # not comparable


def test_pooled_rounds_keep_the_fastest():
    pooled = _bench(2.0).merged(Microbench.from_samples([1.5, 9.0], [1.0, 1.0]))
    assert pooled.runs == 11 and pooled.value == 1.5


def test_trigger_follows_design_decision_5():
    profiler = TwoTierProfiler(PhaseRunner(OptimizationConfig()), TwoTierProfiling(5.0, 5))
    assert profiler.should_full_profile(0, 0.0, None) == "baseline"
    assert profiler.should_full_profile(3, 5.0, 0) is None
    assert profiler.should_full_profile(3, -5.1, 0).startswith("score change -5.1")
    assert profiler.should_full_profile(5, 0.0, 0) is None
    assert profiler.should_full_profile(6, 0.0, 0) == "6 iterations since the last full profile"
    assert profiler.should_full_profile(1, 0.0, 0, regression=True) == "regression"
    assert TwoTierProfiler(profiler.phases, always_full=True).should_full_profile(1, 0.0, 0) == "always full"


def test_from_config_reads_thresholds_and_the_switch():
    config = replace(OptimizationConfig(), enable_two_tier_profiling=False,
                     two_tier_profiling=TwoTierProfiling(10.0, 8))
    profiler = TwoTierProfiler.from_config(PhaseRunner(config), config)
    assert profiler.always_full and profiler.settings.max_tier0_streak == 8


def test_time_savings_price_tier0_iterations_at_their_runs_mean_full_profile():
    records = [ProfileRecord("a", 1, 0.1, 2.0), ProfileRecord("a", 0, 0.1, 0.0),
               ProfileRecord("a", 1, 0.1, 4.0, regression=True), ProfileRecord("b", 0, 0.2, 0.0)]
    s = TimeSavings.from_records(records)
    assert (s.tier0_count, s.tier1_count, s.regressions, s.regressions_caught) == (2, 2, 1, 1)
    assert s.total_s == pytest.approx(6.5)
    assert s.always_full_s == pytest.approx(0.1 + 2.0 + 0.1 + 3.0 + 0.1 + 4.0 + 0.2 + 3.0)
    assert s.saved_ratio == pytest.approx(1 - 6.5 / 12.5) and s.catch_rate == 1.0
    assert TimeSavings.from_records([]).saved_ratio == 0.0 and TimeSavings().catch_rate is None
    assert ProfileRecord.from_payload("x", {"ok": True, "seconds": 1.0}) is None


def test_note_carries_timing_regression_counters_and_hot_spots():
    result = ProfileResult(
        1, "callgrind", "regression",
        {"wall_s": 0.03, "best_wall_s": 0.03, "reference_wall_s": 0.01, "reference_best_wall_s": 0.01,
         "noise": 0.05, "runs": 9, "instructions": 3e8, "reference_instructions": 1e8},
        (Hotspot("solution.c:7 in matmul", 0.9),), regression=True, slowdown=3.0)
    note = result.note()
    assert "3.00x slower than the reference" in note and "Regression: 3.00x slower" in note
    assert "300.0 M instructions (reference 100.0 M)" in note and "solution.c:7 in matmul 90 %" in note
    payload = json.loads(json.dumps(result.payload()))
    assert payload["tier"] == 1 and payload["metrics"]["instructions"] == 3e8 and payload["regression"]


# --- the profiler on real compiled code ---------------------------------------------------------

SELF_TIMED_H = r"""/* A self-timed harness, as an untrusted (self-reported) task may bring one: it prints
 * KISYSTEM_BENCH lines that tier 0 reads for tasks without a judge. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static inline long kb_env_long(const char *name, long fallback, long lo, long hi) {
    const char *text = getenv(name);
    char *end;
    long value;
    if (!text || !*text) return fallback;
    value = strtol(text, &end, 10);
    if (*end || value < lo || value > hi) {
        fprintf(stderr, "ignoring %s=%s (allowed %ld..%ld)\n", name, text, lo, hi);
        return fallback;
    }
    return value;
}

static inline double kb_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef void (*kb_fn)(void);

static inline void kb_bench(kb_fn candidate, kb_fn reference) {
    long warmup = kb_env_long("KISYSTEM_BENCH_WARMUP", 1, 0, 100);
    long repeats = kb_env_long("KISYSTEM_BENCH_REPEATS", 5, 1, 1000);
    double min_seconds = (double)kb_env_long("KISYSTEM_BENCH_MIN_MS", 0, 0, 3600000) * 1e-3;
    long i;
    for (i = 0; i < warmup; i++) {
        candidate();
        reference();
    }
    double begin = kb_now();
    for (i = 0; i < repeats || (i < 1000 && kb_now() - begin < min_seconds); i++) {
        double start, tc, tr;
        if (i % 2 == 0) {
            start = kb_now(); candidate(); tc = kb_now() - start;
            start = kb_now(); reference(); tr = kb_now() - start;
        } else {
            start = kb_now(); reference(); tr = kb_now() - start;
            start = kb_now(); candidate(); tc = kb_now() - start;
        }
        printf("KISYSTEM_BENCH rep=%ld candidate_s=%.9f reference_s=%.9f\n", i, tc, tr);
    }
}

"""

BENCH_C = r"""#include "selftimed.h"
void candidate(void);
__attribute__((noinline)) void spin(long n) { volatile double s = 0; for (long i = 0; i < n; i++) s += i; }
__attribute__((noinline)) void kisystem_bench_candidate(void) { candidate(); }
__attribute__((noinline)) void kisystem_bench_reference(void) { spin(400000); }
int main(void) { kb_bench(kisystem_bench_candidate, kisystem_bench_reference); return 0; }
"""


def solution(factor: int) -> str:
    return f"void spin(long n);\nvoid candidate(void) {{ spin(400000L * {factor}); }}\n"


def spin_task(**changes) -> TaskSpec:
    task = TaskSpec(
        id="spin", domain="C++/System", language="c", prompt="make candidate() fast", solution_file="solution.c",
        build=PhaseSpec("gcc -O1 -g -o bench_bin bench.c solution.c", 120), test=PhaseSpec("true", 60),
        profile=ProfileSpec("./bench_bin", 300),
        fixed={"bench.c": BENCH_C, "selftimed.h": SELF_TIMED_H})
    return replace(task, **changes)


async def _profiled(profiler: TwoTierProfiler, task: TaskSpec, root: Path, iteration: int, code: str):
    workspace = Workspace.create(root, "run", iteration)
    workspace.write_files({task.solution_file: code})
    build = await profiler.phases.run(Phase.BUILD, task.build, workspace, task.fixed, task.language)
    assert build.ok, build.result.output
    return await profiler.profile(task, workspace, "run", iteration)


async def test_two_tier_profiles_fully_at_baseline_and_regression_only(tmp_path):
    profiler = TwoTierProfiler(PhaseRunner(OptimizationConfig()))
    task = spin_task()
    results = [await _profiled(profiler, task, tmp_path, i, solution(f)) for i, f in enumerate((1, 1, 3, 3))]
    assert [r.tier for r in results] == ([1, 0, 1, 0] if HAVE_VALGRIND else [0, 0, 0, 0])
    assert [r.regression for r in results] == [False, False, True, False]
    assert results[2].slowdown > 2 and results[0].score > results[2].score
    assert results[0].metrics["reference_best_wall_s"] > 0 and results[1].tier0_s > 0
    if HAVE_VALGRIND:
        assert 2.5 < results[2].metrics["instructions"] / results[2].metrics["reference_instructions"] < 3.5
        assert any("spin" in h.name for h in results[2].hotspots)
        assert results[0].reason == "baseline" and results[2].reason == "regression"
    savings = profiler.get_time_savings()
    assert (savings.tier0_count + savings.tier1_count, savings.regressions) == (4, 1)


async def test_program_without_bench_lines_is_rerun_and_timed(tmp_path):
    profiler = TwoTierProfiler(PhaseRunner(OptimizationConfig()))
    task = spin_task(language="python", solution_file="s.py", build=None, fixed={},
                     profile=ProfileSpec("python -c 'import time; time.sleep(0.05)'", 60, reference_time_s=0.05))
    workspace = Workspace.create(tmp_path, "run", 0)
    result = await profiler.profile(task, workspace, "run", 0)
    assert result.ok and result.tier == 0 and "no full profiler" in result.reason
    assert result.metrics["runs"] >= 1 and result.metrics["best_wall_s"] >= 0.05
    assert 80 < result.score <= 100


async def test_skip_and_failure_are_reported_not_scored(tmp_path):
    profiler = TwoTierProfiler(PhaseRunner(OptimizationConfig()))
    skip = spin_task(profile=ProfileSpec("echo 'KISYSTEM_SKIP no CUDA device here: compiled only'", 60))
    result = await profiler.profile(skip, Workspace.create(tmp_path, "run", 0), "run", 0)
    assert result.ok and result.skipped.startswith("no CUDA device") and not result.metrics
    assert result.note() == "Not profiled: no CUDA device here: compiled only."
    fail = spin_task(profile=ProfileSpec("echo boom; exit 3", 60))
    result = await profiler.profile(fail, Workspace.create(tmp_path, "run", 1), "run", 1)
    assert not result.ok and result.payload()["error"] and "failed" in result.note()


INVENTORY = parse_inventory({
    "endpoints": {"e": {"backend": "openai", "base_url": "http://127.0.0.1:9"}},
    "models": [{"name": "small", "rank": 1, "timeout_s": 30, "endpoint": "e", "mode": "chat"}],
    "routes": {"C++/System": {"start": "small", "escalation": []}},
}, "test inventory")


async def test_loop_stores_tier_and_metrics_per_iteration_and_prompts_with_the_figures(tmp_path):
    config = replace(OptimizationConfig(), target_score=95)
    phases = PhaseRunner(config)
    model = ScriptedModel({"small": [f"```c\n{solution(3)}```", f"```c\n{solution(1)}```"]})
    attempts = AttemptRunner(phases, tmp_path / "ws", profiler=TwoTierProfiler.from_config(phases, config))
    with LearningStore.open(tmp_path / "learning.db") as store:
        result = await Supervisor(config, INVENTORY, model, store, attempts).run_task(spin_task())
        events = [e.payload for e in store.events(result.run_id) if e.kind == "profile"]
        assert result.outcome == "success" and result.iterations == 2
        assert [e["iteration"] for e in events] == [1, 2] and all("tier" in e and e["metrics"] for e in events)
        assert store.get_run(result.run_id).t_profile > 0
        prompt = model.requests[1].messages[-1]["content"]
        assert "Make it faster" in prompt and "slower than the reference" in prompt
        if HAVE_VALGRIND:
            assert events[0]["tier"] == 1 and "Hot spots (callgrind" in prompt

    cli_main._register_commands()
    out = CliRunner().invoke(cli_main.cli, ["--db", str(tmp_path / "learning.db"), "--home", str(tmp_path),
                                            "profile", "stats", "--json"])
    assert out.exit_code == 0, out.output
    stats = json.loads(out.output)
    assert stats["runs"] == 1 and stats["profiles"] == 2 and stats["total_s"] > 0
    table = CliRunner().invoke(cli_main.cli, ["--db", str(tmp_path / "learning.db"), "profile", "stats"])
    assert table.exit_code == 0 and "always full" in table.output


def test_profile_stats_on_a_missing_database_prints_zeros(tmp_path):
    cli_main._register_commands()
    out = CliRunner().invoke(cli_main.cli, ["--db", str(tmp_path / "none.db"), "profile", "stats", "--json"])
    assert out.exit_code == 0 and json.loads(out.output)["profiles"] == 0
    assert not (tmp_path / "none.db").exists()


def test_profile_stats_ignore_events_of_older_loops(tmp_path):
    with LearningStore.open(tmp_path / "l.db") as store:
        run = store.start_run("t", "C++/System", "m")
        store.append_event(run, "profile", {"ok": True, "seconds": 0.5})
        store.append_event(run, "profile", {"tier": 1, "tier0_s": 0.1, "tier1_s": 2.0})
        store.finish_run(run, RunResult(model="m", iter=1, score_final=90.0, outcome="success"))
    cli_main._register_commands()
    out = CliRunner().invoke(cli_main.cli, ["--db", str(tmp_path / "l.db"), "profile", "stats", "--json"])
    assert json.loads(out.output)["tier1_count"] == 1
