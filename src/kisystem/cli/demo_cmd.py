"""`kisystem demo`: the main job on the embedded fleet, from nothing to a learning record."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict

import click
from rich.table import Table

from kisystem.cli.context import AppContext, pass_app
from kisystem.cli.live import LiveView
from kisystem.cli.run_cmd import results_table
from kisystem.cli.tasks_cmd import parse_range
from kisystem.loop.humaneval import PROBLEM_COUNT, import_humaneval
from kisystem.loop.session import loop_session
from kisystem.loop.supervisor import TaskResult
from kisystem.loop.taskspec import load_tasks
from kisystem.models import catalog
from kisystem.models.inventory import load_inventory
from kisystem.models.server import embedded_specs

DEMO_RANGE = "22:30"  # eight problems; the embedded models solve some of these


@click.command("demo")
@click.option("--range", "span", default=DEMO_RANGE, show_default=True, help="HumanEval problems A:B to run.")
@pass_app
def demo(app: AppContext, span: str) -> None:
    """Import a HumanEval slice, serve the embedded models and run the loop on each task."""
    start, stop = parse_range(span, PROBLEM_COUNT)
    started = time.monotonic()
    for spec in embedded_specs(load_inventory("embedded")):
        with app.err_console.status(f"pulling {spec.embedded} (first run only) ..."):
            catalog.pull(app.paths.models_dir, spec.embedded)
    tasks_dir = app.paths.home / "demo" / "tasks"
    tasks = load_tasks(import_humaneval(tasks_dir, start, stop))
    app.err_console.print(f"{len(tasks)} HumanEval tasks in {tasks_dir}")
    results = asyncio.run(_run(app, tasks))
    app.console.print(results_table(results))
    app.console.print(per_model_table(results))
    solved = sum(r.solved for r in results)
    app.console.print(f"solved {solved}/{len(results)} in {time.monotonic() - started:.0f} s; "
                      f"learning database: {app.paths.db}")


async def _run(app: AppContext, tasks) -> list[TaskResult]:
    inventory = load_inventory("embedded")
    with LiveView(app.err_console) as view:
        async with loop_session(app.config, inventory, app.paths, on_event=view,
                                warn=lambda msg: app.err_console.print(f"[yellow]warning: {msg}[/yellow]")) as sup:
            return [await sup.run_task(task) for task in tasks]


def per_model_table(results: list[TaskResult]) -> Table:
    attempts: Counter[str] = Counter()
    seconds: dict[str, float] = defaultdict(float)
    solved: Counter[str] = Counter()
    for r in results:
        attempts.update(r.model_attempts)
        for model, s in r.model_seconds.items():
            seconds[model] += s
        if r.solved:
            solved[r.model] += 1
    table = Table(title="per model")
    for col in ("model", "attempts", "generation time", "tasks solved"):
        table.add_column(col)
    for model in attempts:
        table.add_row(model, str(attempts[model]), f"{seconds[model]:.1f} s", str(solved[model]))
    return table
