"""`kisystem schedule ...`: the scheduled optimization jobs (seed D), their daemon and their history.

The schedule, the leases and the results log live in the learning database (``--db``), so any
number of ``schedule`` processes may run at once: a job runs in one of them at a time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import click
from rich.text import Text

from kisystem.cli.context import AppContext, pass_app
from kisystem.cli.layout import FittedTable, Layout
from kisystem.errors import UsageError
from kisystem.schedule.daemon import (
    DEFAULT_INTERVAL_S,
    DaemonView,
    result_summary,
    run_daemon,
    run_line,
    span,
)
from kisystem.schedule.registry import Registry, UnknownJob, default_registry
from kisystem.schedule.scheduler import JobEvent, Scheduler
from kisystem.schedule.store import JobRun, JobState, ScheduleStore

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
ONLY_OPTION = click.option("--only", "only", multiple=True, metavar="JOB",
                           help="Only these jobs (repeatable) [default: every registered job].")
HISTORY_DAYS = 30
ID_AND_TASK = (0, 1)


@click.group("schedule")
def schedule_group() -> None:
    """Scheduled optimization jobs: run when due, one scheduler at a time per job, results logged.

    \b
    Triggers: continuous (every 5 min), cve (daily), bi-weekly (14 d), monthly (30 d),
    quarterly (90 d), or every:SECONDS.  A job is due at once when first seen; after a run
    it is due at the run's start + its interval, so missed due times (the machine was off)
    make one catch-up run.  Third-party jobs come from the `kisystem.jobs` entry-point group.
    """


@schedule_group.command("list")
@JSON_OPTION
@pass_app
def list_jobs(app: AppContext, as_json: bool) -> None:
    """Every registered job: trigger, when it is due next, who runs it now, and its last result."""
    registry = _registry(app)
    with _store(app) as store:
        rows = {job.name: job for job in store.jobs()} if store else {}
        last = store.last_results() if store else {}
        now = store.now() if store else None
    data = [_job_json(task, rows.get(task.name), last.get(task.name), now) for task in registry.registered()]
    if as_json:
        return _echo_json(data)
    if not data:
        return app.console.print("no scheduled jobs are registered")
    headers = ("job", "agent", "trigger", "next due", "last run", "description")
    cells = [(Text(d["name"]), d["agent"], d["trigger"], _due_cell(d, now), _last_cell(d["last"]),
              Text(d["description"])) for d in data]  # fmt: skip
    short = Layout(headers[:-1], [row[:-1] for row in cells])  # where the descriptions do not fit
    app.console.print(FittedTable("scheduled jobs", [Layout(headers, cells), short], key=(0,)))


@schedule_group.command("run-due")
@ONLY_OPTION
@JSON_OPTION
@pass_app
def run_due(app: AppContext, only: tuple[str, ...], as_json: bool) -> int:
    """Run every due job once (one cycle; the same as `schedule run --once`).  Exit 1 if a job failed."""
    registry = _registry(app, only)
    with DaemonView(app.err_console) as view, _scheduler(app, registry, view) as scheduler:
        runs = asyncio.run(scheduler.run_optimization_cycle(only=only or None))
        left = scheduler.seconds_to_next_due(only or None)
    if as_json:
        _echo_json([run.to_json() for run in runs])
    elif not runs:
        app.console.print("no job is due" + (f"; the next one in {span(left)}" if left is not None else ""))
    return _exit_code(runs)


@schedule_group.command("run")
@click.argument("job", required=False)
@click.option("--once", is_flag=True, help="Run one cycle of due jobs and stop (the same as `schedule run-due`).")
@click.option("--interval", "interval_s", type=click.FloatRange(1, 86400), default=DEFAULT_INTERVAL_S,
              show_default=True, help="Longest wait between cycles, in seconds.")
@ONLY_OPTION
@click.option("--json", "as_json", is_flag=True,
              help="Print each finished run as one JSON line (JOB: the run as a JSON object).")
@pass_app
def run(app: AppContext, job: str | None, once: bool, interval_s: float, only: tuple[str, ...], as_json: bool) -> int:
    """Run JOB now, due or not; without JOB, the scheduler daemon.

    \b
    kisystem schedule run JOB        run one job now (it is due next at now + its interval)
    kisystem schedule run            run due jobs until stopped (Ctrl-C, SIGTERM)
    kisystem schedule run --once     run the due jobs once and stop

    The daemon shows what runs on a terminal and writes a log line per run otherwise.
    Stopping it logs the running job as interrupted and leaves it due; a killed daemon's
    job is taken over by the next scheduler, so a restart neither loses nor repeats a run.
    Exit 1 if a job failed (--once, JOB).
    """
    if job is not None:
        if once or only or interval_s != DEFAULT_INTERVAL_S:
            raise UsageError("schedule run JOB runs one job now: --once, --interval and --only are for the daemon "
                             "(schedule run without JOB)")
        return _run_one(app, job, as_json)
    registry = _registry(app, only)
    with DaemonView(app.err_console) as view, _scheduler(app, registry, _with_json(view, as_json)) as scheduler:
        summary = asyncio.run(run_daemon(scheduler, once=once, interval_s=interval_s, only=only or None,
                                         on_idle=view.idle))  # fmt: skip
    return _exit_code(summary.runs)


def _run_one(app: AppContext, name: str, as_json: bool) -> int:
    registry = _registry(app)
    registry.get(name)  # an unknown name fails before the database is touched
    with DaemonView(app.err_console) as view, _scheduler(app, registry, view) as scheduler:
        run_ = asyncio.run(scheduler.run_job(name))
    if as_json:
        _echo_json(run_.to_json())
    else:
        app.console.print(run_line(run_), markup=False, highlight=False)
        if run_.result:
            app.console.print_json(json.dumps(run_.result))
    return _exit_code([run_])


@schedule_group.command("history")
@click.argument("job", required=False)
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=HISTORY_DAYS, show_default=True,
              help="Runs that started in the last N days.")
@JSON_OPTION
@pass_app
def history(app: AppContext, job: str | None, days: float, as_json: bool) -> None:
    """The runs of the last N days (of JOB), newest first."""
    with _store(app) as store:
        if job is not None:
            _known(app, store, job)
        runs = store.history(days, job) if store else []
    if as_json:
        return _echo_json([run.to_json() for run in runs])
    if not runs:
        return app.console.print(f"no runs in the last {days:g} days" + (f" of {job}" if job else ""))
    headers = ("id", "job", "status", "started", "took", "missed", "what came of it")
    cells = [(f"#{r.id}", Text(r.task), _status_cell(r.status), _when(r.started), span(r.duration_s), str(r.missed),
              Text(_what(r))) for r in runs]  # fmt: skip
    app.console.print(FittedTable(f"runs in the last {days:g} days", [Layout(headers, cells)], key=ID_AND_TASK))


@schedule_group.command("stats")
@click.option("--days", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Only runs that started in the last N days [default: all].")
@JSON_OPTION
@pass_app
def stats(app: AppContext, days: float | None, as_json: bool) -> None:
    """Runs per job by status, success rate (successes among successes and errors), last result."""
    with _store(app) as store:
        rows = store.stats(days) if store else []
    if as_json:
        return _echo_json([row.to_json() for row in rows])
    if not rows:
        return app.console.print("no job has run yet")
    headers = ("job", "runs", "success", "error", "skipped", "success rate", "last run")
    cells = [(Text(s.task), str(s.runs), str(s.successes), str(s.errors), str(s.skipped),
              "-" if s.success_rate is None else f"{100 * s.success_rate:.0f} %", _last_cell(_json_of(s.last)))
             for s in rows]  # fmt: skip
    app.console.print(FittedTable("scheduled job results", [Layout(headers, cells)], key=(0,)))


# -- helpers ----------------------------------------------------------------------------------


def _registry(app: AppContext, only: tuple[str, ...] = ()) -> Registry:
    registry = default_registry(warn=lambda m: app.err_console.print(f"warning: {m}", markup=False, highlight=False))
    for name in only:
        registry.get(name)
    return registry


@contextmanager
def _scheduler(app: AppContext, registry: Registry, view: Any) -> Iterator[Scheduler]:
    with Scheduler.open(app.paths, app.config, app.inventory, registry=registry, on_event=view) as scheduler:
        yield scheduler


@contextmanager
def _store(app: AppContext) -> Iterator[ScheduleStore | None]:
    """The store over --db; None when the database does not exist (a reading command leaves it absent)."""
    if not app.paths.db.exists():
        yield None
        return
    with ScheduleStore.open(app.paths.db) as store:
        yield store


def _known(app: AppContext, store: ScheduleStore | None, name: str) -> None:
    """A job that is registered or has a history; else the one-line error naming the known ones."""
    names = dict.fromkeys([*_registry(app).names(), *(store.known_names() if store else [])])
    if name not in names:
        raise UnknownJob(f"no scheduled job {name!r}; known jobs: {', '.join(names) or 'none'}")


def _with_json(view: DaemonView, as_json: bool) -> Any:
    if not as_json:
        return view

    def show(event: JobEvent) -> None:
        view(event)
        if event.kind == "finished" and event.run is not None:
            click.echo(json.dumps(event.run.to_json()))

    return show


def _job_json(task: Any, job: JobState | None, last: JobRun | None, now: datetime | None) -> dict[str, Any]:
    return {"name": task.name, "agent": task.agent, "trigger": task.trigger,
            "interval_s": task.interval.total_seconds(), "time_limit_s": task.time_limit_s,
            "description": task.description, "next_due": _ts(job.next_due) if job else None,
            "due": job is None or (now is not None and job.next_due <= now),
            "running_by": job.lease_holder if job and job.run_open else None, "last": _json_of(last)}


def _json_of(run: JobRun | None) -> dict[str, Any] | None:
    return run.to_json() if run is not None else None


def _due_cell(d: dict[str, Any], now: datetime | None) -> str:
    if d["running_by"]:
        return f"[cyan]running[/cyan] ({d['running_by']})"
    if d["next_due"] is None or d["due"] or now is None:
        return "[yellow]due now[/yellow]"
    return f"in {span((datetime.fromisoformat(d['next_due']) - now).total_seconds())}"


def _last_cell(last: dict[str, Any] | None) -> str:
    if last is None:
        return "never"
    return f"{_status_cell(last['status'])} {_when(datetime.fromisoformat(last['finished']))}"


def _status_cell(status: str) -> str:
    colour = {"success": "green", "skipped": "yellow"}.get(status, "red")
    return f"[{colour}]{status}[/{colour}]"


def _what(run: JobRun) -> str:
    catch_up = f"catch-up for {run.missed + 1} due times; " if run.catch_up else ""
    if run.status == "error":
        return f"{catch_up}{run.error}"
    if run.status == "skipped":
        return f"{catch_up}{run.reason}"
    return catch_up + result_summary(run.result)


def _exit_code(runs: list[JobRun]) -> int:
    return 1 if any(run.status == "error" for run in runs) else 0


def _ts(value: datetime) -> str:
    return value.isoformat(timespec="seconds")


def _when(value: datetime) -> str:
    """A time for a table: UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))
