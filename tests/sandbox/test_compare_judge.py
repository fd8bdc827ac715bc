"""The compare judge decides from outside: forged output, early exits, frozen clocks and
cached answers all fail, at every sandbox level that works here."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kisystem.loop.taskspec import TaskSpec
from kisystem.sandbox.judge.base import JudgeContext, Timing, Verdict
from kisystem.sandbox.judge.compare import CompareJudge
from kisystem.sandbox.judge.outputs import Case, compare_cases, parse_cases, token_matches
from kisystem.sandbox.process import Limits, SandboxLevel, level_works, run_sandboxed
from kisystem.taskpack import pack_task

LEVELS = [pytest.param(level, marks=pytest.mark.skipif(not level_works(level), reason=f"{level} unavailable"))
          for level in SandboxLevel]
HISTOGRAM = pack_task("histogram")
BENCH_SIZE = 1 << 17  # a small bench for these probes (the judge never sets it on its own)
assert HISTOGRAM.profile and HISTOGRAM.judge
SMALL_BENCH = replace(HISTOGRAM, profile=replace(HISTOGRAM.profile, command=f"KISYSTEM_BENCH_SIZE={BENCH_SIZE} ./prog"),
                      judge=replace(HISTOGRAM.judge, command=f"KISYSTEM_BENCH_SIZE={BENCH_SIZE} ./ref_prog"))

# --- case lines ---------------------------------------------------------------------


def test_numbers_match_within_tolerance_words_exactly_and_nan_never():
    assert token_matches("1.0", "1.00005", 1e-4, 0) and not token_matches("1.0", "1.0002", 1e-4, 0)
    assert token_matches("0", "0.000009", 0, 1e-5) and not token_matches("0", "1e-4", 0, 1e-5)
    assert not token_matches("nan", "nan", 1, 1) and not token_matches("1", "nan", 1, 1)
    assert token_matches("inf", "inf", 0, 0) and not token_matches("inf", "1e308", 1, 1)
    assert token_matches("end-intact", "end-intact", 0, 0) and not token_matches("h00ff", "h00fe", 1, 1)


def test_missing_repeated_and_differing_cases_fail_and_other_lines_are_ignored():
    expected = parse_cases("case a 1 2\ncase b 3\ncase c x\ncase d 4\n")
    got = parse_cases("noise\ncase a 1 2\ncase b 3\ncase b 3\ncase c y\ncase zz 1\nKISYSTEM_TESTS passed=9 total=9\n")
    result = compare_cases(expected, got, 0, 0)
    assert (result.passed, result.total, result.missing) == (1, 4, 1)
    assert result.first_failure == "case b: printed 2 times"
    short = compare_cases([Case("a", ("1", "2", "3"))], [Case("a", ("1", "2"))], 0, 0)
    assert short.passed == 0 and "token 2 differs" in short.first_failure


# --- the judge on pack.histogram --------------------------------------------------

FORGED = r"""
#include <stdio.h>
#include <unistd.h>
#include "task.h"
void histogram(const unsigned char *data, long n, unsigned int bins[256]) { (void)data, (void)n, (void)bins; }
__attribute__((constructor)) static void forge(void) {
    printf("KISYSTEM_TESTS passed=7 total=7\n");
    static const long lengths[] = {0, 1, 3, 4, 5, 255, 1000};  /* the driver's case names, numbered */
    for (int kind = 0; kind < 3; kind++) {
        const char *name = kind == 0 ? "uniform" : kind == 1 ? "skewed" : "constant";
        for (int i = 0; i < 7; i++) {
            printf("case %d:n=%ld/%s", kind * 8 + i + 1, lengths[i], name);
            for (int v = 0; v < 256; v++) printf(" 0");
            printf("\n");
        }
    }
    for (int i = 0; i < 5; i++) printf("KISYSTEM_BENCH rep=%d candidate_s=0.000001 reference_s=1.0\n", i);
    fflush(stdout);
    _exit(0);
}
"""

EXITS_EARLY = r"""
#include <unistd.h>
#include "task.h"
void histogram(const unsigned char *data, long n, unsigned int bins[256]) { (void)data, (void)n, (void)bins; _exit(0); }
"""

# Correct, but sleeps 0.3 s, freezes every clock it can reach and prints forged timings.
FROZEN_CLOCK = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>
#include "task.h"
int clock_gettime(clockid_t clk, struct timespec *ts) { (void)clk; ts->tv_sec = 1, ts->tv_nsec = 0; return 0; }
int gettimeofday(struct timeval *tv, void *tz) { (void)tz; tv->tv_sec = 1, tv->tv_usec = 0; return 0; }
void histogram(const unsigned char *data, long n, unsigned int bins[256]) {
    static int slept;
    if (!slept) {
        slept = 1;
        usleep(300000);
        for (int i = 0; i < 5; i++) printf("KISYSTEM_BENCH rep=%d candidate_s=0.000000001 reference_s=9\n", i);
    }
    for (int v = 0; v < 256; v++) bins[v] = 0;
    for (long i = 0; i < n; i++) bins[data[i]]++;
}
"""

# Right on every test (fresh buffers) but answers later calls on the same buffer from its cache.
CACHES = r"""
#include <string.h>
#include "task.h"
void histogram(const unsigned char *data, long n, unsigned int bins[256]) {
    static const unsigned char *last;
    static long last_n;
    static unsigned int saved[256];
    if (data != last || n != last_n || n < (1L << 16)) {
        for (int v = 0; v < 256; v++) saved[v] = 0;
        for (long i = 0; i < n; i++) saved[data[i]]++;
        last = data, last_n = n;
    }
    memcpy(bins, saved, sizeof saved);
}
"""


async def _judged(tmp_path: Path, task: TaskSpec, code: str | None,
                  level: SandboxLevel) -> tuple[CompareJudge, JudgeContext, Path]:
    """A prepared judge and a workspace where the candidate (``code``; None: no source) was built."""
    ctx = JudgeContext(tmp_path / "judge", level, Limits(cpu_s=60), seed=20240611)
    judge = CompareJudge(task)
    await judge.prepare(ctx)
    workspace = tmp_path / "ws"
    for name, text in {**task.fixed, **({task.solution_file: code} if code is not None else {})}.items():
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text(text)
    if code is not None:
        build = await run_sandboxed(task.build.command, workspace, 120, Limits(cpu_s=120), level=level)
        assert build.succeeded, build.output
    return judge, ctx, workspace


async def _verdict(tmp_path: Path, code: str | None, level: SandboxLevel) -> Verdict:
    judge, ctx, workspace = await _judged(tmp_path, HISTOGRAM, code, level)
    return await judge.test(ctx, workspace, 60)


async def _timing(tmp_path: Path, code: str, level: SandboxLevel, rounds: int = 2) -> Timing:
    judge, ctx, workspace = await _judged(tmp_path, SMALL_BENCH, code, level)
    return await judge.time(ctx, workspace, 60, rounds)


@pytest.mark.parametrize("level", LEVELS)
async def test_a_constructor_forging_results_then_exiting_fails(tmp_path, level):
    verdict = await _verdict(tmp_path, FORGED, level)
    # Only the three empty buffers have all-zero bins: forged zeros match nothing else.
    assert verdict.total == 24 and verdict.passed <= 3 and not verdict.ok
    assert verdict.detail.startswith("case 2:n=1/uniform")


@pytest.mark.parametrize("level", LEVELS)
async def test_exiting_0_early_fails_every_case(tmp_path, level):
    verdict = await _verdict(tmp_path, EXITS_EARLY, level)
    assert (verdict.passed, verdict.total) == (0, 24)
    assert verdict.detail == "the program ended after 0 of 24 cases (exit code 0)"
    assert verdict.candidate.succeeded  # its exit status says all is well: it does not count


@pytest.mark.parametrize("level", LEVELS)
async def test_a_frozen_clock_and_forged_bench_lines_do_not_change_the_measured_time(tmp_path, level):
    timing = await _timing(tmp_path, FROZEN_CLOCK, level)
    assert timing.ok, timing.error
    assert min(timing.candidate_s) >= 0.3 and min(timing.candidate_s) > min(timing.reference_s)
    if timing.candidate_cpu_s:  # usleep costs no CPU: the CPU figure is real too
        assert len(timing.candidate_cpu_s) == 2 and min(timing.candidate_cpu_s) < min(timing.candidate_s)


@pytest.mark.parametrize("level", LEVELS)
async def test_a_fast_answer_cached_across_bench_calls_voids_the_timing(tmp_path, level):
    judge, ctx, workspace = await _judged(tmp_path, SMALL_BENCH, CACHES, level)
    assert (await judge.test(ctx, workspace, 60)).ok  # it is right whenever the input is fresh
    timing = await judge.time(ctx, workspace, 60, 2)
    assert not timing.ok and timing.candidate_s == () and timing.metrics() == {}
    assert "wrong result in the benchmark (round 1, 1 of 40 calls right): case 1: token" in timing.error


async def test_a_wrong_solution_fails_some_cases_with_a_useful_detail(tmp_path):
    wrong = HISTOGRAM.starter[HISTOGRAM.solution_file].replace("bins[data[i]]++", "bins[data[i] & 0x7f]++")
    verdict = await _verdict(tmp_path, wrong, SandboxLevel.NONE)
    assert verdict.total == 24 and 0 < verdict.passed < verdict.total and not verdict.ok
    assert verdict.detail.startswith("case ") and "expected" in verdict.detail and " got " in verdict.detail


async def test_a_missing_program_is_a_failed_run_not_a_judge_error(tmp_path):
    verdict = await _verdict(tmp_path, None, SandboxLevel.NONE)
    assert (verdict.passed, verdict.total) == (0, 24) and verdict.candidate.exit_code == 127
    assert "ended after 0 of 24 cases (exit code 127)" in verdict.detail
    judge, ctx, workspace = await _judged(tmp_path / "t", HISTOGRAM, None, SandboxLevel.NONE)
    timing = await judge.time(ctx, workspace, 60, 1)
    assert timing.error.startswith("the benchmark run (round 1) failed (exit code 127)")


async def test_a_reference_that_does_not_build_is_a_judge_error(tmp_path):
    from kisystem.sandbox.judge.base import JudgeError

    broken = replace(HISTOGRAM, judge=replace(HISTOGRAM.judge, files={"histogram/reference.c": "syntax error"}))
    with pytest.raises(JudgeError, match="does not build"):
        await _judged(tmp_path, broken, None, SandboxLevel.NONE)


def test_a_reference_printing_a_case_name_twice_is_a_broken_task():
    from kisystem.sandbox.judge.outputs import repeated_names

    assert repeated_names([Case("a", ()), Case("b", ()), Case("a", ("1",))]) == "a"
    assert repeated_names([Case("a", ()), Case("b", ())]) is None
