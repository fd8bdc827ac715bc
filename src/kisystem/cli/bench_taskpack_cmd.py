"""`kisystem bench taskpack`: the loop with the embedded fleet on the task pack's CPU tasks."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from kisystem.bench.taskpack import DEFAULT_ROUNDS, TaskRow, cpu_tasks, totals
from kisystem.cli.context import AppContext, pass_app
from kisystem.loop.supervisor import LoopEvent
from kisystem.loop.taskspec import TaskSpec


@click.command("taskpack")
@click.option("--task", "task_ids", multiple=True, metavar="ID",
              help="A CPU task of the pack, by id or short name (repeatable) [default: every CPU task].")
@click.option("--rounds", type=click.IntRange(1, 100), default=DEFAULT_ROUNDS, show_default=True,
              help="Judge timing rounds each for the starter and the final candidate.")
@pass_app
def taskpack(app: AppContext, task_ids: tuple[str, ...], rounds: int) -> None:
    """The loop with the embedded fleet on every CPU task of the task pack.

    Per task: the starter's time, the final candidate's (the best passing attempt), its
    speed-up over the starter and its ratio to the hidden reference, all timed by the
    task's judge in this run after the loop; iterations, the model that wrote the final
    candidate, and whether it passes the judge's test again.  Runs go to
    HOME/bench/taskpack-runs.db, not the learning database.
    """
    from kisystem.bench.taskpack import run_taskpack
    from kisystem.models.inventory import load_inventory

    tasks = cpu_tasks(task_ids)
    bench_dir = app.paths.home / "bench"
    out = bench_dir / f"taskpack-{time.strftime('%Y%m%d-%H%M%S')}.json"
    inventory = load_inventory("embedded")
    rows: list[TaskRow] = []
    started = time.monotonic()

    def progress(number: int, task: TaskSpec, row: TaskRow | None) -> None:
        head = f"[{number}/{len(tasks)}] {task.id}"
        if row is None:
            app.err_console.print(f"{head}: loop starts · {_elapsed(started)}", soft_wrap=True)
            return
        rows.append(row)
        save(out, rows, rounds, inventory.source)  # a later crash keeps the tasks done so far
        app.err_console.print(f"{head}: {_summary(row)} · {_elapsed(started)}", soft_wrap=True, markup=False)

    def on_event(event: LoopEvent) -> None:
        if event.kind == "score":
            error = event.data.get("error")
            app.err_console.print(f"  iteration {event.iteration} ({event.model}): score "
                                  f"{event.data.get('score') or 0:.1f}{f', {error}' if error else ''}",
                                  soft_wrap=True, markup=False, highlight=False)

    def warn(message: str) -> None:
        app.err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)

    asyncio.run(run_taskpack(app.config, inventory, app.paths, tasks, bench_dir / "taskpack-runs.db", rounds,
                             progress, on_event, warn))
    app.console.print(taskpack_table(rows, f"bench taskpack: {len(rows)} CPU tasks, {rounds} timing rounds each"))
    app.console.print(f"results: {out}")


def save(path: Path, rows: list[TaskRow], rounds: int, inventory: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"inventory": inventory, "rounds": rounds, "tasks": [r.to_dict() for r in rows], "totals": totals(rows)}
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def taskpack_table(rows: list[TaskRow], title: str) -> Table:
    t = Table(title=title, caption="times: fastest judge-timed round; speed-up = starter / final; vs ref = final / "
                                   "reference (below 1: faster); totals: geometric means")
    for col in ("task", "starter", "final", "reference", "speed-up", "vs ref", "iters", "model", "passes"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        t.add_row(r.task.removeprefix("pack."), _s(r.starter_s), _s(r.final_s), _s(r.reference_s), _x(r.speedup),
                  _x(r.vs_reference), str(r.iterations), r.model or "-", "yes" if r.passes else "no")
    s = totals(rows)
    t.add_section()
    t.add_row("total", "", "", "", _x(s["speedup_geomean"]), _x(s["vs_reference_geomean"]), str(s["iterations"]),
              "", f"{s['passing']}/{s['tasks']}" + (" all" if s["all_pass"] else ""))
    return t


def _summary(row: TaskRow) -> str:
    text = f"{row.outcome} in {row.iterations} iterations"
    if row.model:
        text += f", final by {row.model}"
    text += f"; starter {_s(row.starter_s)}"
    if row.final_s is not None:
        text += f", final {_s(row.final_s)} ({_x(row.speedup)} faster, {_x(row.vs_reference)} the reference's time)"
    text += f"; passes: {'yes' if row.passes else 'no'}"
    return text + (f" ({row.note})" if row.note else "")


def _s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.3g} ms"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}×"


def _elapsed(started: float) -> str:
    seconds = time.monotonic() - started
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
