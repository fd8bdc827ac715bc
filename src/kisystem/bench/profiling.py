"""`bench profiling`: two-tier against always-full profiling on one scripted optimization run.

A scripted sequence of candidate versions of the pack's matmul task plays a model that
improves its code step by step; two of them are deliberately slowed copies of the
version before (the injected regressions).  Every version is real C, built with the
task's own command in a fresh sandboxed workspace and tested by the task's judge, then
profiled by a two-tier profiler and by an always-full one (tier 0: the judge's timing of
candidate and reference from outside), in one process and on the same build.
Which profiler goes first alternates per iteration, so load drifting on the machine
hits both alike.  No model is involved.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from kisystem.config import OptimizationConfig
from kisystem.errors import KisystemError
from kisystem.loop.categorizer import Phase
from kisystem.loop.phases import PhaseRunner, limits_for
from kisystem.loop.profiling import ProfileResult, TimeSavings, TwoTierProfiler
from kisystem.loop.taskspec import TaskSpec
from kisystem.loop.workspace import Workspace
from kisystem.sandbox.judge.session import JudgedRun, judged_run
from kisystem.taskpack import pack_task

TASK_ID = "pack.matmul"
SLOWDOWN = 3  # an injected regression does the same work this many times


@dataclass(frozen=True)
class Version:
    name: str
    code: str
    injected: bool = False


_HEAD = '#include <string.h>\n#include "task.h"\n\n'
_IJK = """void matmul(int n, const float *a, const float *b, float *c) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            float sum = 0.0f;
            for (int k = 0; k < n; k++) sum += a[i * n + k] * b[k * n + j];
            c[i * n + j] = sum;
        }
}
"""
_IJK_HOISTED = """void matmul(int n, const float *a, const float *b, float *c) {
    for (int i = 0; i < n; i++) {
        const float *arow = a + (size_t)i * n;
        for (int j = 0; j < n; j++) {
            float sum = 0.0f;
            for (int k = 0; k < n; k++) sum += arow[k] * b[(size_t)k * n + j];
            c[(size_t)i * n + j] = sum;
        }
    }
}
"""
_IKJ = """void matmul(int n, const float *a, const float *b, float *c) {
    memset(c, 0, sizeof(float) * (size_t)n * n);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) {
            float aik = a[(size_t)i * n + k];
            for (int j = 0; j < n; j++) c[(size_t)i * n + j] += aik * b[(size_t)k * n + j];
        }
}
"""
_IKJ_RESTRICT = """void matmul(int n, const float *a, const float *b, float *c) {
    memset(c, 0, sizeof(float) * (size_t)n * n);
    for (int i = 0; i < n; i++) {
        float *restrict crow = c + (size_t)i * n;
        for (int k = 0; k < n; k++) {
            const float aik = a[(size_t)i * n + k];
            const float *restrict brow = b + (size_t)k * n;
            for (int j = 0; j < n; j++) crow[j] += aik * brow[j];
        }
    }
}
"""
_IKJ_UNROLLED = """void matmul(int n, const float *a, const float *b, float *c) {
    memset(c, 0, sizeof(float) * (size_t)n * n);
    for (int i = 0; i < n; i++) {
        float *restrict crow = c + (size_t)i * n;
        for (int k = 0; k < n; k++) {
            const float aik = a[(size_t)i * n + k];
            const float *restrict brow = b + (size_t)k * n;
            int j = 0;
            for (; j + 4 <= n; j += 4) {
                crow[j] += aik * brow[j], crow[j + 1] += aik * brow[j + 1];
                crow[j + 2] += aik * brow[j + 2], crow[j + 3] += aik * brow[j + 3];
            }
            for (; j < n; j++) crow[j] += aik * brow[j];
        }
    }
}
"""
_VECTOR_ROW = """typedef float v4 __attribute__((vector_size(16)));

static void axpy_row(float *c, const float *b, float s, int n) {
    v4 sv = {s, s, s, s};
    int j = 0;
    for (; j + WIDTH <= n; j += WIDTH)
        for (int w = 0; w < WIDTH; w += 4) {
            v4 bv, cv;
            memcpy(&bv, b + j + w, 16), memcpy(&cv, c + j + w, 16);
            cv += sv * bv;
            memcpy(c + j + w, &cv, 16);
        }
    for (; j < n; j++) c[j] += s * b[j];
}

"""
_VECTOR = """void matmul(int n, const float *a, const float *b, float *c) {
    memset(c, 0, sizeof(float) * (size_t)n * n);
    for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++) axpy_row(c + (size_t)i * n, b + (size_t)k * n, a[(size_t)i * n + k], n);
}
"""
_BLOCKED = """void matmul(int n, const float *a, const float *b, float *c) {
    memset(c, 0, sizeof(float) * (size_t)n * n);
    for (int ii = 0; ii < n; ii += BLOCK)
        for (int kk = 0; kk < n; kk += BLOCK)
            for (int i = ii; i < ii + BLOCK && i < n; i++)
                for (int k = kk; k < kk + BLOCK && k < n; k++)
                    axpy_row(c + (size_t)i * n, b + (size_t)k * n, a[(size_t)i * n + k], n);
}
"""


def _vector(width: int, body: str, block: int = 0) -> str:
    defines = f"#define WIDTH {width}\n" + (f"#define BLOCK {block}\n" if block else "")
    return _HEAD + defines + _VECTOR_ROW + body


def slowed(version: Version, factor: int = SLOWDOWN) -> Version:
    """The same code doing its whole work ``factor`` times: a deliberately slowed candidate."""
    code = version.code.replace("void matmul(", "static void matmul_once(", 1)
    code += (f"\n/* deliberately slowed: the same work {factor} times */\n"
             "void matmul(int n, const float *a, const float *b, float *c) {\n"
             f"    for (int r = 0; r < {factor}; r++) matmul_once(n, a, b, c);\n}}\n")
    return Version(f"{version.name}, slowed x{factor}", code, injected=True)


def versions() -> list[Version]:
    """The scripted optimization run: 14 versions, two of them injected regressions."""
    steps = [
        Version("naive i-j-k", _HEAD + _IJK),
        Version("hoisted row pointer", _HEAD + _IJK_HOISTED),
        Version("i-k-j loop order", _HEAD + _IKJ),
        Version("i-k-j + restrict", _HEAD + _IKJ_RESTRICT),
        Version("i-k-j unrolled x4", _HEAD + _IKJ_UNROLLED),
    ]
    steps.append(slowed(steps[-1]))
    steps += [
        Version("4-wide vectors", _vector(4, _VECTOR)),
        Version("8-wide vectors", _vector(8, _VECTOR)),
        Version("8-wide, blocked 64", _vector(8, _BLOCKED, 64)),
        Version("8-wide, blocked 128", _vector(8, _BLOCKED, 128)),
        Version("8-wide, blocked 32", _vector(8, _BLOCKED, 32)),
    ]
    steps.append(slowed(steps[-1]))
    steps += [
        Version("4-wide, blocked 64", _vector(4, _BLOCKED, 64)),
        Version("8-wide, blocked 64 (final)", _vector(8, _BLOCKED, 64)),
    ]
    return steps


@dataclass(frozen=True)
class Row:
    iteration: int
    version: Version
    two_tier: ProfileResult
    always_full: ProfileResult


@dataclass(frozen=True)
class ProfilingBenchResult:
    rows: list[Row]
    two_tier: TimeSavings
    always_full: TimeSavings
    size: int | None

    @property
    def injected(self) -> int:
        return sum(r.version.injected for r in self.rows)

    @property
    def saving(self) -> float:
        """Profiling time two-tier saved against always-full, as a share of always-full's."""
        full = self.always_full.total_s
        return 1.0 - self.two_tier.total_s / full if full > 0 else 0.0

    def caught(self, arm: str) -> int:
        """Injected regressions the arm flagged and profiled fully in that iteration."""
        return sum(_caught(getattr(r, arm)) for r in self.rows if r.version.injected)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": TASK_ID, "size": self.size, "iterations": len(self.rows), "saving": round(self.saving, 4),
            "injected_regressions": self.injected,
            "caught": {"two_tier": self.caught("two_tier"), "always_full": self.caught("always_full")},
            "two_tier": self.two_tier.to_dict(), "always_full": self.always_full.to_dict(),
            "rows": [_row_dict(r) for r in self.rows],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _caught(result: ProfileResult) -> bool:
    return result.regression and result.tier == 1


def _row_dict(row: Row) -> dict[str, Any]:
    return {"iteration": row.iteration, "version": row.version.name, "injected": row.version.injected,
            "two_tier": row.two_tier.payload(), "always_full": row.always_full.payload()}


Progress = Callable[[Row], None]


async def run_profiling_bench(iterations: int | None = None, size: int | None = None,
                              config: OptimizationConfig | None = None, workdir: Path | None = None,
                              progress: Progress | None = None) -> ProfilingBenchResult:
    """Run the scripted sequence (its first ``iterations`` versions) under both profilers."""
    config = config or OptimizationConfig()
    steps = versions()[: iterations or None]
    task = _sized(pack_task(TASK_ID), size)
    phases = PhaseRunner(config)
    two_tier = TwoTierProfiler(phases, config.two_tier_profiling)
    always_full = TwoTierProfiler(phases, config.two_tier_profiling, always_full=True)
    limits = limits_for(task.language, task.test.timeout_s)
    with tempfile.TemporaryDirectory(prefix="kisystem-bench-profiling-", dir=workdir) as tmp:
        rows = []
        async with judged_run(task, Path(tmp), phases.level, limits) as judged:
            assert judged is not None, "the pack's tasks are judged"
            for i, version in enumerate(steps):
                workspace = await _built(phases, task, judged, Path(tmp), i, version)
                first, second = (two_tier, always_full) if i % 2 == 0 else (always_full, two_tier)
                results = {id(first): await first.profile(task, workspace, "bench", i, judged),
                           id(second): await second.profile(task, workspace, "bench", i, judged)}
                rows.append(Row(i, version, results[id(two_tier)], results[id(always_full)]))
                if progress:
                    progress(rows[-1])
    return ProfilingBenchResult(rows, two_tier.get_time_savings(), always_full.get_time_savings(), size)


def _sized(task: TaskSpec, size: int | None) -> TaskSpec:
    """The task with its benchmark (candidate's and reference's alike) at ``size``."""
    if size is None or task.profile is None or task.judge is None:
        return task
    prefix = f"export KISYSTEM_BENCH_SIZE={int(size)}; "
    return replace(task, profile=replace(task.profile, command=prefix + task.profile.command),
                   judge=replace(task.judge, command=prefix + (task.judge.command or "")))


async def _built(phases: PhaseRunner, task: TaskSpec, judged: JudgedRun, root: Path, i: int,
                 version: Version) -> Workspace:
    workspace = Workspace.create(root, "bench", i)
    workspace.write_files({task.solution_file: version.code})
    assert task.build is not None
    build = await phases.run(Phase.BUILD, task.build, workspace, task.fixed, task.language)
    test = await phases.run_judged(judged, workspace, task.fixed, task.test.timeout_s) if build.ok else build
    if not test.ok:
        raise KisystemError(f"bench version {version.name!r} failed its {test.phase}: {test.result.output[-800:]}")
    return workspace


def save(result: ProfilingBenchResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(result.to_json() + "\n")
    return path


def progress_printer(console: Console) -> Progress:
    def show(row: Row) -> None:
        two, full = row.two_tier, row.always_full
        mark = " [red](injected regression)[/red]" if row.version.injected else ""
        console.print(f"{row.iteration:2d} {row.version.name}{mark}: two-tier tier {two.tier} "
                      f"({two.reason}) {two.seconds:.2f} s · always-full {full.seconds:.2f} s")
    return show


def tables(result: ProfilingBenchResult) -> list[Table]:
    return [_rows_table(result), _summary_table(result)]


def _rows_table(result: ProfilingBenchResult) -> Table:
    table = Table(title=f"bench profiling: {len(result.rows)} iterations of {TASK_ID}")
    for col in ("it", "version", "two-tier", "why", "score", "time", "always-full", "score"):
        table.add_column(col)
    for r in result.rows:
        two, full = r.two_tier, r.always_full
        name = f"[red]{r.version.name}[/red]" if r.version.injected else r.version.name
        table.add_row(str(r.iteration), name, f"tier {two.tier}", two.reason, f"{two.score or 0:.1f}",
                      f"{two.seconds:.2f} s", f"{full.seconds:.2f} s", f"{full.score or 0:.1f}")
    return table


def _summary_table(result: ProfilingBenchResult) -> Table:
    table = Table(title="profiling time and injected regressions caught")
    for col in ("arm", "tier 0 / tier 1", "profiling time", "saving", "regressions caught"):
        table.add_column(col)
    for arm, s in (("two_tier", result.two_tier), ("always_full", result.always_full)):
        saving = f"{100 * result.saving:.1f} % ({result.saving:.3f})" if arm == "two_tier" else "-"
        table.add_row(arm.replace("_", "-"), f"{s.tier0_count} / {s.tier1_count}", f"{s.total_s:.2f} s", saving,
                      f"{result.caught(arm)} of {result.injected}")
    return table
