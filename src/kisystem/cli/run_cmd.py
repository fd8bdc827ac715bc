"""`kisystem run TASK.toml`: the optimization loop on one or more tasks."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import click
from rich.text import Text

from kisystem.cli.context import AppContext, pass_app
from kisystem.cli.layout import FittedTable, Layout
from kisystem.cli.live import LiveView, model_sizes
from kisystem.config import OptimizationConfig
from kisystem.loop.session import loop_session
from kisystem.loop.supervisor import TaskResult
from kisystem.loop.taskspec import SELF_REPORTED, TaskSpec, load_tasks


@click.command("run")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", help="Start with this model instead of the domain's start model.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")
@click.option("--keep-workspaces", is_flag=True,
              help="Keep every run's workspaces (default: removed, but for the last failed runs).")
@pass_app
def run(app: AppContext, paths: tuple[Path, ...], model: str | None, as_json: bool, keep_workspaces: bool) -> None:
    """Run the loop on TASK.toml files (or directories of them) until each task exits."""
    inventory = app.inventory
    tasks = load_tasks(paths, inventory.domains)
    if model:
        inventory.model(model)  # an unknown model is a usage error before anything starts
    config = replace(app.config, keep_workspaces=True) if keep_workspaces else app.config
    for task in tasks:
        if not task.trusted:
            app.err_console.print(f"[yellow]warning: {task.id} has no \\[judge]: its result is self-reported by "
                                  "the program and cannot be trusted[/yellow]")
    results = asyncio.run(_run_all(app, config, tasks, model))
    if as_json:
        click.echo(json.dumps([asdict(r) for r in results], indent=2))
    else:
        app.console.print(results_table(results))
        app.console.print(f"learning database: {app.paths.db}")
    return 0 if all(r.solved for r in results) else 1


async def _run_all(app: AppContext, config: OptimizationConfig, tasks: list[TaskSpec],
                   model: str | None) -> list[TaskResult]:
    with LiveView(app.err_console, model_sizes(app.inventory)) as view:
        async with loop_session(config, app.inventory, app.paths, on_event=view, on_fleet=view.fleet,
                                warn=lambda msg: app.err_console.print(f"[yellow]warning: {msg}[/yellow]")) as sup:
            return [await sup.run_task(task, start_model=model) for task in tasks]


RESULT_HEADERS = ("task", "outcome", "score", "judged by", "iterations", "models tried", "tokens", "time")


def results_table(results: list[TaskResult]) -> FittedTable:
    """One row per task: the whole model chain where it fits, else its length and last model; in a
    console too narrow for either table, one record per task (task ids are never cut)."""
    def rows(models: Callable[[tuple[str, ...]], str]) -> list[tuple[Text | str, ...]]:
        return [(Text(r.task), r.outcome, f"{r.score:.0f}", judged_label(r.judged_by), str(r.iterations),
                 models(r.models_tried), str(r.tokens), f"{r.wall_s:.1f} s") for r in results]  # fmt: skip

    layouts = [Layout(RESULT_HEADERS, rows(" -> ".join)), Layout(RESULT_HEADERS, rows(models_short))]
    return FittedTable("results", layouts)


def models_short(tried: tuple[str, ...]) -> str:
    """'qwen2.5-coder-1.5b' for one model, '3, last qwen2.5-coder-1.5b' for a chain."""
    if len(tried) <= 1:
        return "".join(tried)
    return f"{len(tried)}, last {tried[-1]}"


def judged_label(judged_by: str) -> str:
    """How a report names who decided a result; a self-reported one is marked untrusted."""
    return f"judge ({judged_by})" if judged_by != SELF_REPORTED else "UNTRUSTED (self-reported)"
