"""Two-tier profiling (DESIGN decision 5): a microbenchmark every iteration, a full profile when it matters.

Tier 0 runs the task's profile command once with ``KISYSTEM_BENCH_WARMUP``/``_REPEATS``
set.  A pack harness (``taskpack/common/kbench.h``) times candidate and reference in that
one process and prints ``KISYSTEM_BENCH`` lines; any other program is run again a few
times and its wall time taken.  The result: medians and fastest rounds of candidate and
reference, and a noise estimate (the spread of the per-round candidate/reference ratios).

Tier 1 adds the best full profiler found at run time: ncu, else nsys, for CUDA on a GPU
machine; callgrind (instruction counts and cache misses, repeatable on a loaded machine)
plus ``perf stat`` where the kernel really counts, for native code; cProfile for Python.

A full profile runs at a run's first profiled iteration, when the score moved by more
than ``score_change_threshold``, when more than ``max_tier0_streak`` iterations passed
since the last one, and when tier 0 saw a regression: the candidate/reference ratio grew
by more than its noise allows (15 % at least; 1.5x always counts).  A score change or
regression is measured once more first (the rounds pooled), so a burst of load on the
machine does not buy a full profile.  Every run goes
through the PhaseRunner: sandboxed, one profile at a time, under the profile timeout.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import shlex
import shutil
import stat
import subprocess
from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from statistics import median
from typing import Any

from kisystem.config import OptimizationConfig, TwoTierProfiling
from kisystem.loop.categorizer import ErrorInfo, Phase
from kisystem.loop.phases import PhaseRun, PhaseRunner
from kisystem.loop.profile_parsers import (  # noqa: F401  (re-exported: the parsers' public API)
    _NCU_METRICS,
    CANDIDATE_ROOT,
    HOTSPOTS,
    REFERENCE_KERNEL_PREFIX,
    REFERENCE_ROOT,
    Hotspot,
    ToolReport,
    parse_callgrind,
    parse_cprofile,
    parse_ncu,
    parse_nsys,
    parse_perf_stat,
    parse_tool_output,
)
from kisystem.loop.scoring import PerformanceParser, ScoreInput
from kisystem.loop.taskspec import PhaseSpec, TaskSpec
from kisystem.loop.workspace import Workspace
from kisystem.sandbox.judge.base import Timing
from kisystem.sandbox.judge.session import JudgedRun

log = logging.getLogger(__name__)

ENV_WARMUP, ENV_REPEATS, ENV_MIN_MS = "KISYSTEM_BENCH_WARMUP", "KISYSTEM_BENCH_REPEATS", "KISYSTEM_BENCH_MIN_MS"
TIER0_WARMUP, TIER0_REPEATS, TIER0_MIN_MS = 1, 9, 100  # rounds spread over 0.1 s outlast a burst of load
JUDGED_ROUNDS = 5  # whole-process rounds of candidate and reference, timed by the judge
GENERIC_REPEATS, GENERIC_BUDGET_S = 3, 10.0  # re-runs of a program without bench lines
PROFILE_DIR = ".kisystem-profile"
REGRESSION_FLOOR, REGRESSION_CAP, NOISE_SIGMAS = 0.15, 0.50, 3.0
MAX_FILE_BYTES = 64 * 1024 * 1024

_BENCH_RE = re.compile(r"^KISYSTEM_BENCH rep=\d+ candidate_s=(\S+)(?: reference_s=(\S+))?\s*$", re.MULTILINE)
_SKIP_RE = re.compile(r"^KISYSTEM_SKIP (.+?)\s*$", re.MULTILINE)
_SHELL_CHARS = set("|&;<>()$`\\\"'*?[]#~=%{}\n")
_PERF_EVENTS = "instructions,cycles,cache-references,cache-misses,branch-misses"


# --- tools ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    """Which full profilers work on this machine."""

    valgrind: bool = False
    perf_counters: bool = False  # perf present AND the kernel counts hardware events
    nsys: bool = False
    ncu: bool = False
    gpu: bool = False

    def full_profilers(self, language: str) -> tuple[str, ...]:
        """Tier-1 tools for a task's language, best first."""
        if language == "cuda":
            return tuple(t for t, ok in (("ncu", self.ncu), ("nsys", self.nsys)) if ok and self.gpu)
        if language in ("c", "cpp"):
            return tuple(t for t, ok in (("callgrind", self.valgrind), ("perf", self.perf_counters)) if ok)
        return ("cprofile",) if language == "python" else ()


@functools.cache
def detect_tools() -> Tools:
    """Probe once per process; perf's "<not supported>" counters count as no perf."""
    return Tools(valgrind=_which("valgrind") is not None, perf_counters=_perf_counts(),
                 nsys=_which("nsys") is not None, ncu=_which("ncu") is not None, gpu=_gpu_present())


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/cuda/bin"]))


def _perf_counts() -> bool:
    if _which("perf") is None:
        return False
    out = _probe(["perf", "stat", "-x,", "-e", "instructions", "true"])
    return out is not None and bool(re.search(r"^\d+,[^,]*,instructions", out, re.MULTILINE))


def _gpu_present() -> bool:
    if not any(Path("/dev").glob("nvidia[0-9]*")):
        return False
    if _which("nvidia-smi") is None:
        return True  # device nodes, and nothing to ask: let the program find out
    out = _probe(["nvidia-smi", "-L"])
    return out is not None and "GPU" in out


def _probe(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout + done.stderr if done.returncode == 0 else None


# --- tier 0: the microbenchmark -----------------------------------------------------------


def _spread(values: list[float]) -> float:
    """Relative spread: 1.4826 * MAD / median (a robust sigma), 0 for fewer than 2 values."""
    if len(values) < 2:
        return 0.0
    mid = median(values)
    return 1.4826 * median(abs(v - mid) for v in values) / mid if mid > 0 else 0.0


@dataclass(frozen=True)
class Microbench:
    """Timed rounds of one program version: candidate seconds, and the reference's of the
    same rounds (empty when no reference ran alongside).

    Medians are what is reported.  Scores and regressions use the fastest round (for
    candidate and reference alike): on a loaded machine interference only ever adds time,
    so the minimum is the steadiest estimate.  ``noise`` is the relative spread of the
    per-round candidate/reference ratios (of the candidate's times without a reference).
    """

    candidate: tuple[float, ...]
    reference: tuple[float, ...] = ()

    @classmethod
    def from_samples(cls, candidate: Iterable[float], reference: Iterable[float] = ()) -> Microbench:
        candidate, reference = tuple(candidate), tuple(reference)
        paired = len(reference) == len(candidate) and all(r > 0 for r in reference)
        return cls(candidate, reference if paired else ())

    def merged(self, other: Microbench) -> Microbench:
        return Microbench.from_samples(self.candidate + other.candidate, self.reference + other.reference)

    @property
    def runs(self) -> int:
        return len(self.candidate)

    @property
    def candidate_s(self) -> float:
        return median(self.candidate)

    @property
    def best_s(self) -> float:
        return min(self.candidate)

    @property
    def reference_best_s(self) -> float | None:
        return min(self.reference) if self.reference else None

    @property
    def noise(self) -> float:
        if not self.reference:
            return _spread(list(self.candidate))
        return _spread([c / r for c, r in zip(self.candidate, self.reference)])

    @property
    def value(self) -> float:
        """What regressions are judged on: relative to the reference when one ran alongside."""
        return self.best_s / self.reference_best_s if self.reference_best_s else self.best_s

    @property
    def stderr(self) -> float:
        """Relative standard error of a median of ``runs`` rounds with this spread."""
        return 1.2533 * self.noise / math.sqrt(self.runs) if self.runs else 0.0

    def metrics(self) -> dict[str, float]:
        found = {"wall_s": self.candidate_s, "best_wall_s": self.best_s, "noise": self.noise,
                 "runs": float(self.runs)}
        if self.reference:
            found.update(reference_wall_s=median(self.reference), reference_best_wall_s=min(self.reference))
        return found


def parse_bench_lines(output: str) -> tuple[list[float], list[float]]:
    """Candidate and reference seconds from ``KISYSTEM_BENCH`` lines (reference may be empty)."""
    candidate, reference = [], []
    for cand, ref in _BENCH_RE.findall(output):
        try:
            candidate.append(float(cand))
            if ref:
                reference.append(float(ref))
        except ValueError:
            continue
    return candidate, reference


def regression_check(previous: Microbench | None, current: Microbench) -> tuple[bool, float | None]:
    """(regressed, slowdown factor) of ``current`` against the previous measurement."""
    comparable = previous is not None and bool(previous.reference) == bool(current.reference)
    if previous is None or not comparable or previous.value <= 0:
        return False, None
    slowdown = current.value / previous.value
    noise = NOISE_SIGMAS * math.hypot(previous.stderr, current.stderr)
    return slowdown > 1.0 + min(REGRESSION_CAP, max(REGRESSION_FLOOR, noise)), slowdown


# --- tier 1 commands ----------------------------------------------------------------------


def _env_prefix(warmup: int, repeats: int, min_ms: int = 0) -> str:
    return f"export {ENV_WARMUP}={warmup} {ENV_REPEATS}={repeats} {ENV_MIN_MS}={min_ms}; "


def _wrapped(command: str) -> str:
    """The command as arguments for a profiler: itself when simple, else via /bin/sh -c."""
    if _SHELL_CHARS & set(command):
        return "/bin/sh -c " + shlex.quote(command)
    return command


def tier1_command(tool: str, command: str, out_dir: Path | str = PROFILE_DIR) -> str | None:
    """The profile command under ``tool`` (one untimed round), or None if it cannot wrap it.
    Report files go to ``out_dir`` (absolute, since the command may change directory)."""
    run = _wrapped(command)
    out = shlex.quote(str(out_dir))
    children = "--trace-children=yes " if run.startswith("/bin/sh") else ""
    commands = {
        "callgrind": f"valgrind --tool=callgrind --cache-sim=yes {children}"
                     f"--callgrind-out-file={out}/callgrind.%p.out {run}",
        "perf": f"perf stat -x, -o {out}/perf.txt -e {_PERF_EVENTS} -- {run}",
        "nsys": f"nsys profile --force-overwrite=true -o {out}/nsys {run} && nsys stats -q "
                f"--force-export=true --format csv -r cuda_gpu_kern_sum {out}/nsys.nsys-rep",
        "ncu": f"ncu --csv --target-processes all --log-file {out}/ncu.csv "
               f"--metrics {','.join(_NCU_METRICS)} {run}",
        "cprofile": _cprofile_command(command),
    }
    body = commands[tool]
    return _env_prefix(0, 1) + body if body else None


def _cprofile_command(command: str) -> str | None:
    try:
        argv = shlex.split(command)
    except ValueError:
        return None
    if _SHELL_CHARS & set(command) or len(argv) < 2 or not Path(argv[0]).name.startswith("python"):
        return None
    if argv[1].startswith("-"):
        return None
    return shlex.join([argv[0], "-m", "cProfile", "-s", "tottime", *argv[1:]])


def _tool_output(tool: str, workspace: Path, output: str) -> str:
    files = {"callgrind": "callgrind.*.out", "perf": "perf.txt", "ncu": "ncu.csv"}
    if tool not in files:
        return output
    texts = [_read_regular(p) for p in sorted((workspace / PROFILE_DIR).glob(files[tool]))]
    texts = [t for t in texts if t]
    # trace-children leaves one file per process: the harness is the one with the roots, or the biggest
    texts.sort(key=lambda t: (CANDIDATE_ROOT in t, len(t)), reverse=True)
    return texts[0] if texts else ""


def _read_regular(path: Path) -> str:
    """A file the sandboxed program may have tampered with: no symlinks, no huge files."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return ""
        return fh.read().decode(errors="replace")


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileResult:
    """One iteration's profile: its tier, why, the named metrics and the time it took."""

    tier: int
    tool: str
    reason: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    hotspots: tuple[Hotspot, ...] = ()
    tier0_s: float = 0.0
    tier1_s: float = 0.0
    score: float | None = None
    regression: bool = False
    slowdown: float | None = None
    skipped: str = ""
    error: ErrorInfo | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def seconds(self) -> float:
        return self.tier0_s + self.tier1_s

    def note(self) -> str:
        """Key figures for the optimize prompt."""
        if self.error is not None:
            return f"The profile run failed ({self.error.error_type}): no speed figures this time."
        if self.skipped:
            return f"Not profiled: {self.skipped}."
        lines = [_timing_line(self)]
        if self.regression and self.slowdown:
            lines.append(f"Regression: {self.slowdown:.2f}x slower than the previous version (relative to the "
                         "reference); undo what made it slower.")
        lines += [line for line in (_counter_line(self.tool, self.metrics), _kernel_line(self.metrics)) if line]
        if self.hotspots:
            spots = "; ".join(f"{h.name} {100 * h.share:.0f} %" for h in self.hotspots)
            lines.append(f"Hot spots ({self.tool}, share of your code's cost): {spots}.")
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        """The ``profile`` event stored per iteration in the learning database."""
        return {
            "ok": self.ok, "tier": self.tier, "tool": self.tool, "reason": self.reason,
            "seconds": round(self.seconds, 4), "tier0_s": round(self.tier0_s, 4), "tier1_s": round(self.tier1_s, 4),
            "score": self.score, "regression": self.regression,
            "slowdown": round(self.slowdown, 4) if self.slowdown else None,
            "metrics": {k: float(f"{v:.6g}") for k, v in self.metrics.items()},
            "hotspots": [[h.name, round(h.share, 4)] for h in self.hotspots],
            "skipped": self.skipped or None, "error": self.error.to_dict() if self.error else None,
        }



# --- the profiler -------------------------------------------------------------------------


@dataclass
class _RunState:
    """What a run's earlier iterations measured: the trigger's memory."""

    last_full: int | None = None
    last_score: float | None = None
    last_bench: Microbench | None = None

    def update(self, iteration: int, result: ProfileResult, bench: Microbench) -> None:
        if result.tier == 1:
            self.last_full = iteration
        self.last_score, self.last_bench = result.score, bench


@dataclass
class _Job:
    """One iteration's profile runs, sandboxed through the PhaseRunner; their time summed."""

    phases: PhaseRunner
    task: TaskSpec
    workspace: Workspace
    judged: JudgedRun | None = None
    spent: float = 0.0

    @property
    def command(self) -> str:
        assert self.task.profile is not None
        if self.judged is not None:  # the judge's protocol: the same workload it times
            return f"{self.task.profile.command} bench {self.judged.ctx.seed}"
        return self.task.profile.command

    async def time_judged(self) -> Timing:
        assert self.task.profile is not None and self.judged is not None
        timing = await self.phases.time_judged(self.judged, self.workspace, self.task.fixed,
                                               self.task.profile.timeout_s, JUDGED_ROUNDS)
        self.spent += sum(timing.candidate_s) + sum(timing.reference_s)
        return timing

    async def run(self, command: str) -> PhaseRun:
        assert self.task.profile is not None
        spec = PhaseSpec(command, self.task.profile.timeout_s)
        run = await self.phases.run(Phase.PROFILE, spec, self.workspace, self.task.fixed, self.task.language)
        self.spent += run.duration_s
        return run


@dataclass(frozen=True)
class _Verdict:
    score: float
    regression: bool
    slowdown: float | None
    reason: str | None
    confirm: bool  # the trigger rests on one noisy measurement


@dataclass(frozen=True)
class _Tier0:
    bench: Microbench | None
    skipped: str = ""
    error: ErrorInfo | None = None
    cpu: Mapping[str, float] = field(default_factory=dict)  # a judge's CPU times, measured from outside


class TwoTierProfiler:
    """Decides the tier per iteration, runs it, and keeps the statistics.

    One instance serves every task of a process (like the PhaseRunner); per-run state is
    keyed by ``run_key`` (the run id) and the oldest runs are forgotten past ``max_runs``.
    """

    def __init__(self, phases: PhaseRunner, settings: TwoTierProfiling | None = None, *,
                 always_full: bool = False, parser: PerformanceParser | None = None,
                 tools: Tools | None = None, max_runs: int = 256, max_history: int = 100_000) -> None:
        self.phases = phases
        self.settings = settings or TwoTierProfiling()
        self.always_full = always_full
        self.parser = parser or PerformanceParser()
        self.tools = tools
        self.max_runs = max_runs
        self.history: deque[ProfileRecord] = deque(maxlen=max_history)
        self._runs: OrderedDict[str, _RunState] = OrderedDict()

    @classmethod
    def from_config(cls, phases: PhaseRunner, config: OptimizationConfig) -> TwoTierProfiler:
        return cls(phases, config.two_tier_profiling, always_full=not config.enable_two_tier_profiling)

    async def profile(self, task: TaskSpec, workspace: Workspace, run_key: str, iteration: int,
                      judged: JudgedRun | None = None) -> ProfileResult:
        """Tier 0 always; tier 1 on top when :meth:`should_full_profile` says so.  With a
        judge, tier 0 is the judge's timing from outside the candidate, and scores rest on it
        alone: what a full profiler reports from inside the workspace only informs the prompt."""
        if task.profile is None:
            raise ValueError(f"task {task.id} has no profile phase")
        job = _Job(self.phases, task, workspace, judged)
        tier0 = await self._tier0(job)
        if tier0.bench is None:
            return self._record(run_key, ProfileResult(0, "microbench", "tier 0", tier0_s=job.spent,
                                                       skipped=tier0.skipped, error=tier0.error))
        state, bench = self._state(run_key), tier0.bench
        verdict = self._verdict(task, state, iteration, bench)
        if verdict.confirm:  # a noisy trigger: measure again before paying for a full profile
            again = await self._tier0(job)
            if again.bench is not None:
                bench = bench.merged(again.bench)
                verdict = self._verdict(task, state, iteration, bench)
        metrics = {**tier0.cpu, **bench.metrics()}
        result = ProfileResult(0, "microbench", verdict.reason or "no trigger", metrics, tier0_s=job.spent,
                               score=verdict.score, regression=verdict.regression, slowdown=verdict.slowdown)
        if verdict.reason:
            result = await self._tier1(job, result)
        state.update(iteration, result, bench)
        return self._record(run_key, result)

    def _verdict(self, task: TaskSpec, state: _RunState, iteration: int, bench: Microbench) -> _Verdict:
        score = self.performance_score(task, bench)
        regression, slowdown = regression_check(state.last_bench, bench)
        change = score - state.last_score if state.last_score is not None else 0.0
        reason = self.should_full_profile(iteration, change, state.last_full, regression)
        noisy = regression or abs(change) > self.settings.score_change_threshold
        confirm = noisy and not self.always_full and state.last_full is not None and self._confirming_pays()
        return _Verdict(score, regression, slowdown, reason, confirm)

    def _confirming_pays(self) -> bool:
        """A second tier-0 measurement is worth it only where a full profile costs more
        (a judge's timing of whole processes can cost more than one callgrind call)."""
        full = [r.tier1_s for r in self.history if r.tier == 1]
        micro = [r.tier0_s for r in self.history]
        return not full or not micro or sum(full) / len(full) > sum(micro) / len(micro)

    def should_full_profile(self, iteration: int, score_change: float, last_full_iter: int | None,
                            regression: bool = False) -> str | None:
        """Why this iteration gets a full profile (DESIGN decision 5 + regressions), or None."""
        if self.always_full:
            return "always full"
        if last_full_iter is None:
            return "baseline"
        if regression:
            return "regression"
        if abs(score_change) > self.settings.score_change_threshold:
            return f"score change {score_change:+.1f} > {self.settings.score_change_threshold:g}"
        if iteration - last_full_iter > self.settings.max_tier0_streak:
            return f"{iteration - last_full_iter} iterations since the last full profile"
        return None

    def performance_score(self, task: TaskSpec, bench: Microbench) -> float:
        """The score of a run whose tests all pass, from this measurement."""
        static = task.profile.reference_time_s if task.profile else None
        return self.parser.score(ScoreInput.from_metrics(build_ok=True, test_ok=True, test_output="",
                                                         metrics=bench.metrics(), reference_time_s=static))

    def get_time_savings(self) -> TimeSavings:
        """Tier counts and times, the saving against always profiling fully, regressions caught."""
        return TimeSavings.from_records(self.history)

    async def _tier0(self, job: _Job) -> _Tier0:
        if job.judged is not None:
            return self._judged_tier0(await job.time_judged())
        run = await job.run(_env_prefix(TIER0_WARMUP, TIER0_REPEATS, TIER0_MIN_MS) + job.command)
        if not run.ok:
            return _Tier0(None, error=run.error)
        if skip := _SKIP_RE.search(run.result.output):
            return _Tier0(None, skipped=skip.group(1))
        candidate, reference = parse_bench_lines(run.result.output)
        if candidate:
            return _Tier0(Microbench.from_samples(candidate, reference))
        return await self._rerun(job, run.result.duration_s)

    def _judged_tier0(self, timing: Timing) -> _Tier0:
        if timing.skipped:
            return _Tier0(None, skipped=timing.skipped)
        if not timing.ok:
            error = self.phases.categorizer.categorize(Phase.PROFILE, 1, timing.error or "the judge timed nothing")
            return _Tier0(None, error=error)
        cpu = {k: v for k, v in timing.metrics().items() if k.endswith("cpu_s")}
        return _Tier0(Microbench.from_samples(timing.candidate_s, timing.reference_s), cpu=cpu)

    async def _rerun(self, job: _Job, first_s: float) -> _Tier0:
        """A program without bench lines: the first run was the warm-up; time a few more."""
        repeats = max(1, min(GENERIC_REPEATS, int(GENERIC_BUDGET_S / max(first_s, 1e-3))))
        durations = []
        for _ in range(repeats):
            run = await job.run(job.command)
            if not run.ok:
                return _Tier0(None, error=run.error)
            durations.append(run.result.duration_s)
        return _Tier0(Microbench.from_samples(durations))

    async def _tier1(self, job: _Job, base: ProfileResult) -> ProfileResult:
        start, used = job.spent, []
        metrics, hotspots = dict(base.metrics), base.hotspots
        for tool in (self.tools or detect_tools()).full_profilers(job.task.language):
            if tool == "nsys" and "ncu" in used:
                continue  # one GPU profiler is enough
            report = await self._run_tool(job, tool)
            if report is not None:
                used.append(tool)
                metrics = {**report.metrics, **metrics}  # tier 0's figures win: a tool's output file is in the workspace
                hotspots = hotspots or report.hotspots
        if not used:
            return replace(base, reason=f"{base.reason}; no full profiler for this program",
                           tier1_s=job.spent - start)
        hotspots = _with_source(hotspots, job.workspace.path, job.task.solution_file)
        return replace(base, tier=1, tool="+".join(used), metrics=metrics, hotspots=hotspots,
                       tier1_s=job.spent - start)

    async def _run_tool(self, job: _Job, tool: str) -> ToolReport | None:
        out_dir = job.workspace.path / PROFILE_DIR
        command = tier1_command(tool, job.command, out_dir)
        if command is None:
            return None
        _fresh_dir(out_dir)
        run = await job.run(command)
        if not run.ok:
            log.info("full profile with %s failed: %s", tool, run.error.excerpt if run.error else "")
            return None
        report = parse_tool_output(tool, _tool_output(tool, job.workspace.path, run.result.output))
        return report if report.metrics else None

    def run_state(self, run_key: str) -> _RunState | None:
        """What the run's earlier iterations measured (the tier trigger's memory), for a remote
        executor to ship with the next attempt; None for a run not profiled yet."""
        return self._runs.get(run_key)

    def restore(self, run_key: str, state: _RunState) -> None:
        """Take over a run's trigger memory measured elsewhere (by a remote attempt)."""
        self._runs.pop(run_key, None)
        self._runs[run_key] = state
        while len(self._runs) > self.max_runs:
            self._runs.popitem(last=False)

    def _state(self, run_key: str) -> _RunState:
        state = self._runs.pop(run_key, None) or _RunState()
        self._runs[run_key] = state
        while len(self._runs) > self.max_runs:
            self._runs.popitem(last=False)
        return state

    def _record(self, run_key: str, result: ProfileResult) -> ProfileResult:
        self.history.append(ProfileRecord.from_result(run_key, result))
        return result


def _with_source(spots: tuple[Hotspot, ...], workspace: Path, solution_file: str) -> tuple[Hotspot, ...]:
    """Hot lines of the solution file get their source text: the model sees no line numbers."""
    lines = _read_regular(workspace / solution_file).splitlines()
    pattern = re.compile(rf"{re.escape(Path(solution_file).name)}:(\d+) ")
    annotated = []
    for spot in spots:
        found = pattern.match(spot.name)
        if found and 0 < int(found.group(1)) <= len(lines):
            spot = replace(spot, name=f"{spot.name} `{lines[int(found.group(1)) - 1].strip()[:100]}`")
        annotated.append(spot)
    return tuple(annotated)


def _fresh_dir(path: Path) -> None:
    """An empty directory at ``path``, whatever the program left there (a file, a symlink)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    path.mkdir()


# --- statistics ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileRecord:
    """One iteration's profile, as the statistics need it."""

    run_key: str
    tier: int
    tier0_s: float
    tier1_s: float
    regression: bool = False

    @classmethod
    def from_result(cls, run_key: str, result: ProfileResult) -> ProfileRecord:
        return cls(run_key, result.tier, result.tier0_s, result.tier1_s, result.regression)

    @classmethod
    def from_payload(cls, run_key: str, payload: Mapping[str, Any]) -> ProfileRecord | None:
        """From a stored ``profile`` event; None for events without a tier (older loops)."""
        try:
            return cls(run_key, int(payload["tier"]), float(payload.get("tier0_s") or 0.0),
                       float(payload.get("tier1_s") or 0.0), bool(payload.get("regression")))
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class TimeSavings:
    """``tier0_s`` is the microbenchmark time of every iteration (tier-1 ones included);
    ``always_full_s`` estimates always profiling fully: each tier-0-only iteration priced at
    its run's mean full-profile time (the mean over all runs where a run had none)."""

    tier0_count: int = 0
    tier1_count: int = 0
    tier0_s: float = 0.0
    tier1_s: float = 0.0
    always_full_s: float = 0.0
    regressions: int = 0
    regressions_caught: int = 0

    @property
    def total_s(self) -> float:
        return self.tier0_s + self.tier1_s

    @property
    def saved_s(self) -> float:
        return self.always_full_s - self.total_s

    @property
    def saved_ratio(self) -> float:
        return self.saved_s / self.always_full_s if self.always_full_s > 0 else 0.0

    @property
    def catch_rate(self) -> float | None:
        """Regressions tier 0 flagged that got a full profile in the same iteration."""
        return self.regressions_caught / self.regressions if self.regressions else None

    @classmethod
    def from_records(cls, records: Iterable[ProfileRecord]) -> TimeSavings:
        records = list(records)
        full = [r.tier1_s for r in records if r.tier == 1]
        fallback = sum(full) / len(full) if full else 0.0
        by_run: dict[str, list[ProfileRecord]] = defaultdict(list)
        for record in records:
            by_run[record.run_key].append(record)
        return cls(
            tier0_count=sum(r.tier == 0 for r in records), tier1_count=len(full),
            tier0_s=sum(r.tier0_s for r in records), tier1_s=sum(full),
            always_full_s=sum(_always_full(rs, fallback) for rs in by_run.values()),
            regressions=sum(r.regression for r in records),
            regressions_caught=sum(r.regression and r.tier == 1 for r in records))

    def to_dict(self) -> dict[str, Any]:
        return {"tier0_count": self.tier0_count, "tier1_count": self.tier1_count,
                "tier0_s": round(self.tier0_s, 3), "tier1_s": round(self.tier1_s, 3),
                "total_s": round(self.total_s, 3), "always_full_s": round(self.always_full_s, 3),
                "saved_s": round(self.saved_s, 3), "saved_ratio": round(self.saved_ratio, 4),
                "regressions": self.regressions, "regressions_caught": self.regressions_caught,
                "catch_rate": self.catch_rate}


def _always_full(records: list[ProfileRecord], fallback: float) -> float:
    full = [r.tier1_s for r in records if r.tier == 1]
    per_full = sum(full) / len(full) if full else fallback
    return sum(r.tier0_s + (r.tier1_s if r.tier == 1 else per_full) for r in records)


def _seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.3f} s"
    return f"{value * 1e3:.3f} ms" if value >= 1e-3 else f"{value * 1e6:.1f} us"


def _count(value: float) -> str:
    for size, unit in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.0f}"


def _timing_line(result: ProfileResult) -> str:
    m = result.metrics
    where = f"tier {result.tier}: microbenchmark" + (f" + {result.tool}" if result.tier else "")
    head = f"Timing ({where}, {m.get('runs', 0):.0f} runs, noise {100 * m.get('noise', 0):.0f} %): "
    mine = f"your code {_seconds(m.get('best_wall_s', 0.0))} (median {_seconds(m.get('wall_s', 0.0))})"
    reference = m.get("reference_best_wall_s")
    if not reference:
        return head + mine + "."
    factor = m.get("best_wall_s", 0.0) / reference
    verdict = f"{factor:.2f}x slower than" if factor > 1 else f"{1 / factor:.2f}x faster than" if factor else "vs"
    return head + f"{mine}, {verdict} the reference ({_seconds(reference)})."


def _counter_line(tool: str, m: Mapping[str, float]) -> str:
    parts = []
    for key, label in (("instructions", "instructions"), ("l1_misses", "L1 data misses"),
                       ("ll_misses", "last-level misses")):
        if key in m:
            ref = m.get(f"reference_{key}")
            parts.append(f"{_count(m[key])} {label}" + (f" (reference {_count(ref)})" if ref is not None else ""))
    for key, label in (("perf_cache_misses", "cache misses (whole program)"), ("perf_cycles", "cycles")):
        if key in m:
            parts.append(f"{_count(m[key])} {label}")
    return f"Counters ({tool}): " + ", ".join(parts) + "." if parts else ""


def _kernel_line(m: Mapping[str, float]) -> str:
    if "kernel_time_s" not in m:
        return ""
    text = f"GPU kernels: {_seconds(m['kernel_time_s'])}"
    if "reference_kernel_time_s" in m:
        text += f" (reference {_seconds(m['reference_kernel_time_s'])})"
    if "occupancy_pct" in m:
        text += f", achieved occupancy {m['occupancy_pct']:.0f} %"
    if "memory_throughput_pct" in m:
        text += f", DRAM throughput {m['memory_throughput_pct']:.0f} % of peak"
    return text + "."
