"""`bench taskpack`: the loop on every CPU task of the task pack, its final candidates timed.

Per task the real loop runs (routing, feedback, escalation) on a bench database of its
own, with its attempts' workspaces kept.  The final candidate is the run's best-scoring
attempt that passed the judge's test (ties: the earliest), read from the run's ``score``
events; its workspace is the one that attempt was built in.  No passing attempt: the task
fails and only the starter is timed.

Then, in the same process, with a fresh judge (a new seed), the starter and the final
candidate are each built, tested by the judge and timed by its bench mode: candidate and
reference alternately as fresh processes, ``rounds`` rounds each, measured from outside
(:meth:`PhaseRunner.time_judged`, what tier 0 of the profiler uses).  A time is the
fastest round, as the loop's scores take it; the reference's is the fastest of all its
rounds in this run.  Speed-up = starter / final; ratio to the reference = final / reference.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from kisystem.config import OptimizationConfig
from kisystem.errors import KisystemError, UsageError
from kisystem.loop.categorizer import ErrorInfo, Phase
from kisystem.loop.phases import PhaseRunner, limits_for
from kisystem.loop.profiling import JUDGED_ROUNDS
from kisystem.loop.session import loop_session
from kisystem.loop.supervisor import LoopEvent, Supervisor, TaskResult
from kisystem.loop.taskspec import TaskSpec
from kisystem.loop.workspace import Workspace, remove_tree
from kisystem.models.inventory import Inventory
from kisystem.paths import Paths
from kisystem.sandbox.judge.session import JudgedRun, judged_run
from kisystem.store.learning import LearningStore
from kisystem.taskpack import load_pack

log = logging.getLogger(__name__)
DEFAULT_ROUNDS = JUDGED_ROUNDS
GPU_LANGUAGES = frozenset({"cuda"})


@dataclass(frozen=True)
class Measured:
    """One program version built, tested and timed by the task's judge."""

    passes: bool
    seconds: tuple[float, ...] = ()  # the candidate's rounds (empty: not timed)
    reference_s: tuple[float, ...] = ()  # the reference's rounds alongside
    note: str = ""  # why it failed or was not timed

    @property
    def best_s(self) -> float | None:
        return min(self.seconds) if self.seconds else None


@dataclass
class TaskRow:
    """One task's line of the benchmark."""

    task: str
    outcome: str  # the loop's: success, failed, exhausted, ...
    iterations: int
    model: str  # that produced the final candidate; "" when no attempt passed
    passes: bool  # the final candidate passes the judge's test again, here
    starter_s: float | None
    final_s: float | None
    reference_s: float | None
    score: float = 0.0  # the final candidate's score in the loop
    note: str = ""
    rounds: dict[str, list[float]] = field(default_factory=dict)  # every timed round
    final_code: str = ""  # the final candidate's solution file, for the record

    @property
    def speedup(self) -> float | None:
        return _ratio(self.starter_s, self.final_s)

    @property
    def vs_reference(self) -> float | None:
        return _ratio(self.final_s, self.reference_s)

    def to_dict(self) -> dict:
        return {**asdict(self), "speedup": self.speedup, "vs_reference": self.vs_reference}


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def geomean(values: Sequence[float | None]) -> float | None:
    """The geometric mean of the known values (ratios average that way); None if none."""
    known = [v for v in values if v]
    return math.exp(sum(map(math.log, known)) / len(known)) if known else None


def cpu_tasks(ids: Sequence[str] = ()) -> list[TaskSpec]:
    """The pack's CPU tasks (language not CUDA), all or those named by id or short name."""
    tasks = [t for t in load_pack() if t.language not in GPU_LANGUAGES]
    by_name = {name: t for t in tasks for name in (t.id, t.id.removeprefix("pack."))}
    for wanted in ids:
        if wanted not in by_name:
            raise UsageError(f"no CPU task {wanted!r} in the task pack (allowed: {', '.join(t.id for t in tasks)})")
    chosen = {by_name[wanted].id for wanted in ids}
    return [t for t in tasks if t.id in chosen] if ids else tasks


def final_attempt(store: LearningStore, run_id: str) -> tuple[int, str, float] | None:
    """(iteration, model, score) of the run's best-scoring attempt that passed its tests."""
    passed = [e.payload for e in store.events(run_id) if e.kind == "score" and e.payload.get("error") is None]
    if not passed:
        return None
    best = max(passed, key=lambda p: p["score"])  # max keeps the first of equals: the earliest
    return int(best["iteration"]), str(best["model"]), float(best["score"])


async def measure(phases: PhaseRunner, judged: JudgedRun, task: TaskSpec, workspace: Workspace,
                  rounds: int) -> Measured:
    """Build ``workspace``, test it with the judge and, if it passes, time it ``rounds`` rounds."""
    assert task.build is not None and task.profile is not None, "pack tasks build and profile"
    build = await phases.run(Phase.BUILD, task.build, workspace, task.fixed, task.language)
    if not build.ok:
        return Measured(False, note=f"build failed: {_why(build.error)}")
    test = await phases.run_judged(judged, workspace, task.fixed, task.test.timeout_s)
    if not test.ok:
        return Measured(False, note=f"fails the judge's test: {_why(test.error)}")
    timing = await phases.time_judged(judged, workspace, task.fixed, task.profile.timeout_s, rounds)
    if not timing.ok:
        return Measured(True, note=f"not timed: {timing.error or timing.skipped or 'nothing measured'}")
    return Measured(True, timing.candidate_s, timing.reference_s)


def _why(error: ErrorInfo | None) -> str:
    """The error's type and the last line of its excerpt (a judged test's ends with its counts)."""
    if error is None:
        return "no detail"
    lines = error.excerpt.strip().splitlines()
    return f"{error.error_type}: {lines[-1][:200]}" if lines else str(error.error_type)


async def bench_task(sup: Supervisor, task: TaskSpec, rounds: int = DEFAULT_ROUNDS) -> TaskRow:
    """The loop on ``task``, then its starter and final candidate timed by a fresh judge.
    The supervisor's attempt runner must keep workspaces (the final one is rebuilt in place)."""
    result = await sup.run_task(task)
    root = sup.attempts.root.resolve()
    bench_id = f"{result.run_id}-bench"
    try:
        final = final_attempt(sup.store, result.run_id)
        return await _measured_row(sup.attempts.phases, task, result, final, root / bench_id, rounds)
    finally:
        for path in (root / result.run_id, root / bench_id):
            if path.is_dir():
                remove_tree(path)


async def _measured_row(phases: PhaseRunner, task: TaskSpec, result: TaskResult,
                        final: tuple[int, str, float] | None, bench_dir: Path, rounds: int) -> TaskRow:
    root = bench_dir.parent
    async with judged_run(task, bench_dir, phases.level, limits_for(task.language, task.test.timeout_s)) as judged:
        if judged is None:
            raise KisystemError(f"task {task.id} has no judge to time it with")
        starter_ws = Workspace.create(root, bench_dir.name, 0)
        starter_ws.write_files(task.starter)
        starter = await measure(phases, judged, task, starter_ws, rounds)
        candidate, code = None, ""
        if final is not None:
            workspace = _kept_workspace(root, result.run_id, final[0])
            code = (workspace.path / task.solution_file).read_text(errors="replace")
            candidate = await measure(phases, judged, task, workspace, rounds)
    return replace(_row(task, result, final, starter, candidate), final_code=code)


def _kept_workspace(root: Path, run_id: str, iteration: int) -> Workspace:
    path = root / run_id / f"attempt-{iteration}"
    if not path.is_dir():
        raise KisystemError(f"the final candidate's workspace {path} is gone: the bench needs keep_workspaces")
    return Workspace(path)


def _row(task: TaskSpec, result: TaskResult, final: tuple[int, str, float] | None, starter: Measured,
         candidate: Measured | None) -> TaskRow:
    references = starter.reference_s + (candidate.reference_s if candidate else ())
    notes = [f"starter {starter.note}" if starter.note else "",
             "no attempt passed its tests" if final is None else "",
             f"final {candidate.note}" if candidate and candidate.note else ""]
    rounds = {"starter": list(starter.seconds), "reference": list(references)}
    if candidate:
        rounds["final"] = list(candidate.seconds)
    return TaskRow(task.id, result.outcome, result.iterations, final[1] if final else "",
                   bool(candidate and candidate.passes), starter.best_s,
                   candidate.best_s if candidate and candidate.passes else None,
                   min(references) if references else None, final[2] if final else 0.0,
                   "; ".join(n for n in notes if n), rounds)


Progress = Callable[[int, TaskSpec, TaskRow | None], None]  # None: the task starts


async def run_taskpack(config: OptimizationConfig, inventory: Inventory, paths: Paths, tasks: Sequence[TaskSpec],
                       db: Path, rounds: int = DEFAULT_ROUNDS, progress: Progress | None = None,
                       on_event: Callable[[LoopEvent], None] | None = None,
                       warn: Callable[[str], None] = log.warning) -> list[TaskRow]:
    """Every task in turn in one loop session (models started once), on the bench database ``db``."""
    config = replace(config, keep_workspaces=True)  # the final candidate is rebuilt where it was built
    db.parent.mkdir(parents=True, exist_ok=True)
    rows: list[TaskRow] = []
    async with loop_session(config, inventory, paths, db=db, on_event=on_event, warn=warn) as sup:
        for number, task in enumerate(tasks, 1):
            if progress:
                progress(number, task, None)
            rows.append(await bench_task(sup, task, rounds))
            if progress:
                progress(number, task, rows[-1])
    return rows


def totals(rows: Sequence[TaskRow]) -> dict:
    """The summary line: passing count, geometric-mean speed-up and reference ratio, iterations."""
    return {"tasks": len(rows), "passing": sum(r.passes for r in rows),
            "all_pass": bool(rows) and all(r.passes for r in rows),
            "speedup_geomean": geomean([r.speedup for r in rows]),
            "vs_reference_geomean": geomean([r.vs_reference for r in rows]),
            "iterations": sum(r.iterations for r in rows)}
