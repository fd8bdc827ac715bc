"""`kisystem queue ...`: add tasks to the durable queue, run it, watch it, cancel and retry tasks.

The queue lives in the learning database (``--db``).  ``queue run`` claims tasks in
cost-aware order (PriorityEff = PriorityScore / ETA) and runs several at once; it can be
killed at any moment and started again without losing or repeating a task.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from kisystem.cli.context import AppContext, pass_app
from kisystem.cli.layout import FittedTable, Layout
from kisystem.cli.live import FleetProgress, IterationLines, PriorityNotes, model_sizes
from kisystem.cli.run_cmd import judged_label
from kisystem.executors import EXECUTORS
from kisystem.loop.supervisor import LoopEvent
from kisystem.loop.taskspec import expand_task_paths, load_task
from kisystem.store.migrations import QUEUE_STATES
from kisystem.store.queue import ACTIVE_STATES, FINAL_STATES, QueueStore, QueueTask

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
NEXT_SHOWN = 15
FAILED_STATES = ("failed", "exhausted", "dead")


@click.group("queue")
def queue_group() -> None:
    """The durable, cost-aware task queue (kept in the learning database)."""


@contextmanager
def open_queue(app: AppContext) -> Iterator[QueueStore]:
    with QueueStore.open(app.paths.db) as queue:
        yield queue


@queue_group.command("add")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--priority", type=click.FloatRange(0, 100),
              help="PriorityScore for these tasks [default: the spec's priority, else 100·P(domain)].")
@click.option("--model", help="Start model for these tasks [default: the routing policy's choice].")
@click.option("--max-attempts", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Claims a task may die in before it is marked dead.")
@click.option("--key", "key_space", default="", help="Idempotency namespace: the same task is added once per key.")
@JSON_OPTION
@pass_app
def add(app: AppContext, paths: tuple[Path, ...], priority: float | None, model: str | None,
        max_attempts: int, key_space: str, as_json: bool) -> None:  # fmt: skip
    """Add TASK.toml files (or directories of them); a task already in the queue is not added again."""
    from kisystem.queue.runner import submission_for

    inventory = app.inventory
    if model:
        inventory.model(model)
    specs = {path: load_task(path, inventory.domains) for path in expand_task_paths(paths)}
    subs = [submission_for(spec, source=str(path), key_space=key_space, priority=priority, model=model,
                           max_attempts=max_attempts) for path, spec in specs.items()]  # fmt: skip
    with open_queue(app) as queue:
        added = queue.add(subs)
    if as_json:
        return click.echo(json.dumps([asdict(a) for a in added], indent=2))
    untrusted = {spec.id for spec in specs.values() if not spec.trusted}
    for a in added:
        verb = "queued" if a.added else f"already in the queue ({a.state}), not added"
        mark = " [yellow](UNTRUSTED: no \\[judge], its result is self-reported)[/yellow]" if a.task in untrusted else ""
        app.console.print(f"#{a.id} {a.task}: {verb}{mark}")


@queue_group.command("run")
@click.option("--workers", type=click.IntRange(1, 64),
              help="Tasks run at once [default: 2; with --executor ray, the cluster's model slots].")
@click.option("--per-backend", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Generations at once per model backend (local executor; Ray nodes have their slots).")
@click.option("--lease", "lease_s", type=click.FloatRange(5, 3600), default=60.0, show_default=True,
              help="Seconds a claim lasts without a heartbeat.")
@click.option("--follow", is_flag=True, help="Keep waiting for new tasks instead of stopping when the queue is empty.")
@click.option("--executor", "executor_name", type=click.Choice(EXECUTORS), default="local", show_default=True,
              help="Where attempts run: here, or as Ray tasks on the nodes serving their models (`kisystem ray`).")
@click.option("--address", default="auto", show_default=True,
              help="The Ray cluster for --executor ray: auto, or HEAD_HOST:PORT.")
@pass_app
def run(app: AppContext, workers: int | None, per_backend: int, lease_s: float, follow: bool, executor_name: str,
        address: str) -> int:  # fmt: skip
    """Run queued tasks, best PriorityEff first, until the queue is empty."""
    from kisystem.queue.runner import RunnerSettings

    executor = _executor(executor_name, address)
    if workers is None:
        workers = max(2, executor.total_slots()) if executor is not None else 2
    settings = RunnerSettings(workers=workers, lease_s=lease_s, per_backend=per_backend, follow=follow)
    summary = asyncio.run(_run(app, settings, executor))
    states = ", ".join(f"{n} {s}" for s, n in sorted(summary.states.items())) or "nothing"
    app.err_console.print(f"queue run: {summary.claimed} claimed, {summary.recovered} recovered; {states}")
    return 1 if any(summary.states.get(s) for s in FAILED_STATES) else 0


def _executor(name: str, address: str) -> Any:
    """None for the local executor (the supervisor's default); the Ray one, connected, else."""
    if name == "local":
        return None
    from kisystem.executors.ray_executor import RayExecutor, RaySettings

    executor = RayExecutor(settings=RaySettings(address=address))
    executor.connect()  # no cluster: one clear error before any task is claimed
    return executor


async def _run(app: AppContext, settings: Any, executor: Any = None) -> Any:
    from kisystem.loop.session import loop_session
    from kisystem.queue.ordering import learned_ordering, watch_loaded
    from kisystem.queue.runner import QueueRunner, derive_supervisor
    from kisystem.schedule.daemon import continuous_jobs, finished_lines

    warn = lambda msg: app.err_console.print(f"[yellow]warning: {msg}[/yellow]")  # noqa: E731
    loaded: set[str] = set()
    jobs = continuous_jobs(app.config, app.inventory, app.paths, on_event=finished_lines(app.err_console))
    with open_queue(app) as queue, QueueView(app.err_console, _pending(queue), model_sizes(app.inventory)) as view, \
            jobs as between:
        async with loop_session(app.config, app.inventory, app.paths, warn=warn, on_fleet=view.fleet,
                                executor=executor) as base:
            watcher = asyncio.create_task(_watch(app, base.generator, loaded, watch_loaded))
            runner = QueueRunner(queue, base.store, derive_supervisor(base), base.generator,
                                 lambda: learned_ordering(base.store, base.config, base.inventory, lambda: loaded),
                                 settings=settings, inventory=app.inventory, on_event=view, between=between)  # fmt: skip
            try:
                return await runner.run()
            finally:
                watcher.cancel()
                with suppress(asyncio.CancelledError):
                    await watcher


async def _watch(app: AppContext, client: Any, into: set[str], watch: Any) -> None:
    if hasattr(client, "adapter_for"):  # only a real model client can be asked what is loaded
        await watch(app.inventory, client, into)


def _pending(queue: QueueStore) -> int:
    counts = queue.counts()
    return counts["queued"] + sum(counts[s] for s in ACTIVE_STATES)


@queue_group.command("status")
@click.option("--all", "show_all", is_flag=True, help="List every task, finished ones included.")
@JSON_OPTION
@pass_app
def status(app: AppContext, show_all: bool, as_json: bool) -> None:
    """Tasks per state, what runs now, and what runs next (with PriorityScore, ETA and PriorityEff)."""
    if not app.paths.db.exists():
        return _print_status(app, dict.fromkeys(QUEUE_STATES, 0), [], [], {}, as_json, show_all)
    from kisystem.queue.ordering import learned_ordering
    from kisystem.store.learning import LearningStore

    with open_queue(app) as queue, LearningStore.open(app.paths.db) as learning:
        ordering = learned_ordering(learning, app.config, app.inventory)
        upcoming = [_ranked(ordering, c) for c in ordering.queue_order(queue.queued())]
        tasks = queue.tasks()
        _print_status(app, queue.counts(), tasks, upcoming, _judges(learning, tasks), as_json, show_all)


def _judges(learning: Any, tasks: list[QueueTask]) -> dict[int, str]:
    """Who judged each task's last run: a judge kind, or self-reported (untrusted)."""
    runs = {t.id: learning.get_run(t.run_id) for t in tasks if t.run_id}
    return {task_id: run.judge for task_id, run in runs.items() if run is not None and run.judge}


def _ranked(ordering: Any, c: Any) -> dict[str, Any]:
    model = ordering.model(c)
    return {"id": c.id, "domain": c.domain, "model": model or None, "priority_score": ordering.priority(c),
            "eta_s": ordering.eta(model, c.domain), "priority_eff": ordering.eff(c)}


def _print_status(app: AppContext, counts: dict[str, int], tasks: list[QueueTask], upcoming: list[dict[str, Any]],
                  judges: dict[int, str], as_json: bool, show_all: bool) -> None:  # fmt: skip
    if as_json:
        data = {"counts": counts, "next": upcoming,
                "tasks": [{**asdict(t), "judged_by": judges.get(t.id)} for t in tasks]}
        return click.echo(json.dumps(data, indent=2))
    if not tasks:
        return app.console.print("the queue is empty")
    app.console.print("  ".join(f"{s} {n}" for s, n in counts.items() if n) or "the queue is empty")
    by_id = {t.id: t for t in tasks}
    active = [t for t in tasks if t.state in ACTIVE_STATES]
    if active:
        app.console.print(_task_table("running", active))
    if upcoming:
        app.console.print(_next_table(upcoming[:NEXT_SHOWN], by_id, len(upcoming)))
    finished = [t for t in tasks if t.state in FINAL_STATES]
    if finished:
        shown = finished if show_all else finished[-NEXT_SHOWN:]
        app.console.print(_task_table(f"finished (last {len(shown)} of {len(finished)})", shown, judges))


TASK_HEADERS = ("id", "task", "domain", "state", "attempts", "outcome", "score", "judged by", "note")
NEXT_HEADERS = ("id", "task", "domain", "model", "PriorityScore", "ETA", "PriorityEff")
VIEW_HEADERS = ("id", "task", "state", "step")
NEXT_CAPTION = "PriorityEff = PriorityScore / ETA; within 10 % a loaded model goes first"
ID_AND_TASK = (0, 1)  # what names a row: kept whole on one line however narrow the console


def _task_table(title: str, tasks: list[QueueTask], judges: dict[int, str] | None = None) -> FittedTable:
    rows = []
    for t in tasks:
        score = "" if t.score is None else f"{t.score:.0f}"
        judged = judged_label(judges[t.id]) if judges and t.id in judges else ""
        rows.append((f"#{t.id}", Text(t.task), t.domain, t.state, f"{t.attempts}/{t.max_attempts}", t.outcome or "",
                     score, judged, Text(t.note or "")))  # fmt: skip
    return FittedTable(title, [Layout(TASK_HEADERS, rows)], key=ID_AND_TASK)


def _next_table(upcoming: list[dict[str, Any]], by_id: dict[int, QueueTask], total: int) -> FittedTable:
    rows = [(f"#{u['id']}", Text(by_id[u["id"]].task), u["domain"], u["model"] or "-", f"{u['priority_score']:.1f}",
             f"{u['eta_s']:.0f} s", f"{u['priority_eff']:.3f}") for u in upcoming]  # fmt: skip
    return FittedTable(f"next (first {len(upcoming)} of {total} queued)", [Layout(NEXT_HEADERS, rows)],
                       key=ID_AND_TASK, caption=NEXT_CAPTION)


@queue_group.command("cancel")
@click.argument("task_id", type=int)
@pass_app
def cancel(app: AppContext, task_id: int) -> None:
    """Cancel a queued or running task (its runner stops it at the next heartbeat)."""
    with open_queue(app) as queue:
        task = queue.cancel(task_id)
    app.console.print(f"#{task.id} {task.task}: cancelled")


@queue_group.command("retry")
@click.argument("task_id", type=int)
@pass_app
def retry(app: AppContext, task_id: int) -> None:
    """Queue a failed, exhausted, cancelled or dead task again, with fresh attempts and fresh answers."""
    with open_queue(app) as queue:
        task = queue.retry(task_id)
    app.console.print(f"#{task.id} {task.task}: queued again")


class QueueView:
    """Per-task state on a terminal (a live table and a progress bar); plain lines otherwise."""

    def __init__(self, console: Console, total: int, sizes: Mapping[str, int] | None = None) -> None:
        self.console = console
        self.lines = IterationLines()
        self.fleet = FleetProgress(console, sizes or {})
        self.priorities = PriorityNotes()
        self.rows: dict[int, tuple[str, str, str]] = {}  # id -> (task, state, detail)
        self.progress = Progress(TextColumn("queue"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                                 console=console)  # fmt: skip
        self.bar = self.progress.add_task("queue", total=max(total, 1))
        self.live: Live | None = None

    def __enter__(self) -> QueueView:
        if self.console.is_terminal:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.stop()

    def __call__(self, event: Any) -> None:
        self._loop_lines(event.data.get("loop"))
        task = event.task or self.rows.get(event.id, ("?", "", ""))[0]
        changed = self.rows.get(event.id, ("", "", ""))[1] != event.state
        self.rows[event.id] = (task, event.state, event.detail)
        if len(self.rows) > self.progress.tasks[0].total:  # tasks added while running (--follow)
            self.progress.update(self.bar, total=len(self.rows))
        if changed and event.state in FINAL_STATES:
            self.progress.advance(self.bar)
        if self.live is not None:
            self.live.update(self._render())
        elif changed:
            note = f" · {event.detail}" if event.detail else ""
            self.console.print(f"#{event.id} {task}: {event.state}{note}", markup=False, highlight=False)

    def _loop_lines(self, loop: LoopEvent | None) -> None:
        """A line per finished iteration of any task, and what a priority domain means, once."""
        if loop is None:
            return
        for line in self.lines.feed(loop) + self.priorities.feed(loop):
            self.console.print(line, markup=False, highlight=False)

    def _render(self) -> Group:
        active = [(i, r) for i, r in self.rows.items() if r[1] not in FINAL_STATES]
        recent = [(i, r) for i, r in self.rows.items() if r[1] in FINAL_STATES][-5:]
        rows = [(f"#{task_id}", Text(task), _styled(state), Text(detail))
                for task_id, (task, state, detail) in [*active, *recent]]  # fmt: skip
        return Group(self.progress, FittedTable(None, [Layout(VIEW_HEADERS, rows)], key=ID_AND_TASK))


def _styled(state: str) -> str:
    colour = {"succeeded": "green", "running": "cyan", "leased": "cyan", "queued": "yellow"}.get(state, "red")
    return f"[{colour}]{state}[/{colour}]"
