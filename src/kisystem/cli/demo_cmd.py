"""`kisystem demo`: the main job on the embedded fleet, from nothing to a learning record.

A mixed slice (HumanEval problems and task-pack tasks) runs through the loop.  The next
task is picked the way the queue picks: PriorityEff = P(domain) / ETA(model, domain),
learned from the learning database as the demo goes; each time that pick differs from
the one the static prior would make, the demo says so, as it does when a learned bias
changes a task's start model.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import replace

import click
from rich.text import Text

from kisystem.cli.context import AppContext, pass_app
from kisystem.cli.layout import FittedTable, Layout
from kisystem.cli.live import LiveView, model_sizes
from kisystem.cli.run_cmd import results_table
from kisystem.cli.tasks_cmd import parse_range
from kisystem.loop.humaneval import PROBLEM_COUNT, import_humaneval
from kisystem.loop.session import loop_session
from kisystem.loop.supervisor import LoopEvent, Supervisor, TaskResult
from kisystem.loop.taskspec import TaskSpec, load_tasks
from kisystem.models import catalog
from kisystem.models.inventory import Inventory, load_inventory
from kisystem.models.server import embedded_specs
from kisystem.queue.ordering import EtaEstimator, Ordering, PriorityScores, start_models
from kisystem.routing.meta import MetaSupervisor
from kisystem.store.queue import Candidate
from kisystem.taskpack import pack_task

DEMO_RANGE = "0:5"
# Two tasks of one domain, apart in the list: the first one's measured time re-ranks the second.
DEMO_PACK = ("pack.fir-filter", "pack.biquad-cascade")
PER_MODEL_HEADERS = ("model", "attempts", "gen. time", "solved", "escalations")
PER_MODEL_CAPTION = ("attempts: iterations on the model; solved: tasks it solved; "
                     "escalations: model changes before those tasks were solved")
PACK_ITERATIONS = 2  # enough to show a build, a judged test and a timing within the demo's minutes


@click.command("demo")
@click.option("--range", "span", default=DEMO_RANGE, show_default=True, help="HumanEval problems A:B to run.")
@click.option("--pack", "pack_ids", multiple=True, default=DEMO_PACK, show_default=True,
              help="Task-pack tasks to mix in (repeatable).")
@pass_app
def demo(app: AppContext, span: str, pack_ids: tuple[str, ...]) -> None:
    """Serve the embedded fleet and run the loop on a mixed slice of HumanEval and task-pack tasks."""
    start, stop = parse_range(span, PROBLEM_COUNT)
    pack = [replace(pack_task(i), max_iterations=PACK_ITERATIONS) for i in pack_ids]
    started = time.monotonic()
    inventory = load_inventory("embedded")
    for spec in embedded_specs(inventory):
        with app.err_console.status(f"pulling {spec.embedded} (first run only) ..."):
            catalog.pull(app.paths.models_dir, spec.embedded)
    tasks_dir = app.paths.home / "demo" / "tasks"
    humaneval = load_tasks(import_humaneval(tasks_dir, start, stop))
    tasks = interleave(humaneval, pack)
    app.err_console.print(f"{len(humaneval)} HumanEval tasks ({tasks_dir}) and {len(pack)} task-pack tasks")
    results, learned = asyncio.run(_run(app, inventory, tasks))
    app.console.print(results_table(results))
    app.console.print(per_model_table(results))
    for line in learned or ["the learning database changed no decision in this run"]:
        app.console.print(f"learning: {line}")
    solved = sum(r.solved for r in results)
    app.console.print(f"solved {solved}/{len(results)} in {time.monotonic() - started:.0f} s; "
                      f"learning database: {app.paths.db}")


def interleave(humaneval: list[TaskSpec], pack: list[TaskSpec]) -> list[TaskSpec]:
    """Pack tasks spread over the list: the first at the head, the next ones further on."""
    out, step = list(humaneval), max(1, len(humaneval) // max(1, len(pack)))
    for n, task in enumerate(pack):
        out.insert(min(len(out), n * (step + 1)), task)
    return out


async def _run(app: AppContext, inventory: Inventory, tasks: list[TaskSpec]) -> tuple[list[TaskResult], list[str]]:
    learned: list[str] = []
    with LiveView(app.err_console, model_sizes(inventory)) as view:
        def on_event(event: LoopEvent) -> None:
            view(event)
            if event.kind == "bias":
                learned.append(f"{event.task} started on {event.model} instead of {event.data['replaces']} "
                               f"({event.data['policy']} routing, from the recorded runs)")

        async with loop_session(app.config, inventory, app.paths, on_event=on_event, on_fleet=view.fleet,
                                warn=lambda msg: app.err_console.print(f"[yellow]warning: {msg}[/yellow]")) as sup:
            results, pending = [], list(tasks)
            while pending:
                task, why = pick_next(sup, inventory, pending)
                if why:
                    learned.append(why)
                    app.err_console.print(f"[cyan]learning: {why}[/cyan]")
                pending.remove(task)
                results.append(await sup.run_task(task))
            return results, learned


def pick_next(sup: Supervisor, inventory: Inventory, pending: list[TaskSpec]) -> tuple[TaskSpec, str | None]:
    """The queue's pick from the learning database, and why, when the static prior picks another."""
    meta = MetaSupervisor(sup.store, sup.config)
    eta = EtaEstimator.from_store(sup.store)
    learned = Ordering(eta, PriorityScores.from_meta(meta), start_models(inventory, meta.recommend_model_bias()))
    prior = Ordering(EtaEstimator(), PriorityScores(), start_models(inventory))
    candidates = [Candidate(n, task.domain, None, None, 1) for n, task in enumerate(pending)]
    chosen, static = learned.pick(candidates), prior.pick(candidates)
    if chosen.id == static.id:
        return pending[chosen.id], None
    return pending[chosen.id], (f"ran {pending[chosen.id].id} before {pending[static.id].id}: "
                                f"{_why(learned, eta, chosen)} against {_why(learned, eta, static)}")


def _why(ordering: Ordering, eta: EtaEstimator, c: Candidate) -> str:
    estimate = eta.estimate(ordering.model(c), c.domain)
    return (f"{c.domain} priority {ordering.priority(c):.0f} / ETA {estimate.seconds:.0f} s "
            f"({estimate.source}, {estimate.runs} runs)")


def per_model_table(results: list[TaskResult]) -> FittedTable:
    attempts: Counter[str] = Counter()
    seconds: dict[str, float] = defaultdict(float)
    solved: Counter[str] = Counter()
    escalations: Counter[str] = Counter()
    for r in results:
        attempts.update(r.model_attempts)
        for model, s in r.model_seconds.items():
            seconds[model] += s
        if r.solved:
            solved[r.model] += 1
            escalations[r.model] += len(r.models_tried) - 1
    rows = [(Text(model), str(attempts[model]), f"{seconds[model]:.1f} s", str(solved[model]), str(escalations[model]))
            for model in attempts]  # fmt: skip
    return FittedTable("per model", [Layout(PER_MODEL_HEADERS, rows)], caption=PER_MODEL_CAPTION)
