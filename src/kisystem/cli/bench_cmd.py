"""`kisystem bench ...`: benchmarks that print figures measured in one run."""

from __future__ import annotations

import asyncio
import time

import click
from rich.table import Table

from kisystem.bench.humaneval import ArmResult, arms, humaneval_tasks, run_arm, save
from kisystem.cli.context import AppContext, pass_app
from kisystem.cli.tasks_cmd import parse_range
from kisystem.loop.humaneval import PROBLEM_COUNT
from kisystem.loop.supervisor import TaskResult


@click.group("bench")
def bench_group() -> None:
    """Benchmarks: the same tasks under several strategies, in one process."""


@bench_group.command("humaneval")
@click.option("--range", "span", default="0:40", show_default=True, help="Problems A:B (half-open).")
@pass_app
def humaneval(app: AppContext, span: str) -> None:
    """Single-shot with each model against the full loop on HumanEval problems."""
    start, stop = parse_range(span, PROBLEM_COUNT)
    tasks = humaneval_tasks(start, stop)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    db = app.paths.home / "bench" / f"humaneval-{stamp}.db"

    def progress(arm: str, r: TaskResult) -> None:
        mark = "[green]solved[/green]" if r.solved else f"[red]{r.outcome}[/red]"
        app.err_console.print(f"{arm}: {r.task} {mark} ({r.iterations} it, {r.wall_s:.1f} s)")

    results = [asyncio.run(run_arm(arm, tasks, app.inventory, app.paths, db, progress))
               for arm in arms(app.config, app.inventory)]
    app.console.print(table(results, f"HumanEval {start}:{stop}"))
    out = save(results, db.with_suffix(".json"), {"range": [start, stop], "inventory": app.inventory.source})
    app.console.print(f"results: {out}\nruns: {db}")


def table(results: list[ArmResult], title: str) -> Table:
    t = Table(title=title)
    for col in ("arm", "solved", "attempts", "tokens", "wall time", "model time", "solved / model-min"):
        t.add_column(col)
    for r in results:
        t.add_row(r.arm, f"{r.solved}/{r.attempted}", str(r.attempts), str(r.tokens), f"{r.wall_s:.0f} s",
                  f"{r.model_s:.0f} s", f"{r.solved_per_model_minute:.2f}")
    return t
