"""`kisystem stats`: seed B's success metrics and the Phase 7 goals, from the learning database (read only)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click
from rich.console import Group
from rich.table import Table

from kisystem.cli.context import AppContext, pass_app
from kisystem.cli.layout import FittedTable, Layout
from kisystem.errors import UsageError
from kisystem.stats import StatsReport, Window, collect, no_data
from kisystem.stats.efficiency import FIFO_NEEDS, ROI_NEEDS, THROUGHPUT_NEEDS, WAIT_NEEDS, QueueEfficiency, RoiAccuracy
from kisystem.stats.escalation import MODELS_NEED, RUNS_NEEDS, EscalationStats
from kisystem.stats.goals import RECOVERY_NEEDS, Goal
from kisystem.stats.profiling import SAVINGS_NEED, saved_ratio
from kisystem.store.learning import LearningStore, utc_now

NONE_YET = "-"
ESCALATION_CAPTION = ("stop-loss: escalations after a failed iteration, and exhausted runs; escalated: runs "
                      "escalated after a failure; recovered: of those, solved")


@click.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
@click.option("--days", type=click.IntRange(min=1), default=None,
              help="Only the last N days (runs started, tasks queued) [default: all history].")
@pass_app
def stats(app: AppContext, as_json: bool, days: int | None) -> None:
    """Phase 7 goals beside their targets; escalations and model effectiveness per domain; the queue's
    wait, throughput and ROI accuracy; two-tier profiling savings; the meta-supervisor's hit rate."""
    report = read_report(app, Window(utc_now(), days))
    if as_json:
        click.echo(json.dumps({"db": str(app.paths.db), **report.to_dict()}, indent=2))
        return
    app.console.print(render(report, str(app.paths.db)))


def read_report(app: AppContext, window: Window) -> StatsReport:
    """The report over --db; a missing database is one clear line, never a fresh empty file."""
    path = app.paths.db
    if not path.exists():
        raise UsageError(f"no learning database at {path}: run some tasks first (kisystem run, kisystem queue run),"
                         " or point --db / KISYSTEM_DB at one")
    with LearningStore.open(path) as store:
        return collect(store, window, app.config)


def render(report: StatsReport, db: str) -> Group:
    days = report.window.days
    span = f"last {days} days" if days else "all history"
    return Group(goals_table(report.goals, f"{span} · {db}"), escalation_table(report.escalation),
                 model_table(report.escalation), queue_table(report.efficiency), profiling_table(report),
                 meta_table(report.meta))


def goals_table(goals: Sequence[Goal], caption: str) -> FittedTable:
    full = Layout(("metric", "target", "value", "status", "how measured"),
                  [(g.metric, g.target, g.shown, g.status, g.how) for g in goals])
    short = Layout(full.headers[:4], [row[:4] for row in full.rows])
    return FittedTable("Phase 7 goals", [full, short], caption=caption)


def escalation_table(e: EscalationStats) -> FittedTable | str:
    if not e.domains:
        return f"Escalations: {no_data(RUNS_NEEDS)}"
    headers = ("domain", "runs", "escalations", "stop-loss", "escalated", "recovered")
    rows = [(d.domain, str(d.logged_runs), str(d.escalations), str(d.stoploss_triggers), str(d.escalated_runs),
             _recovered(d.recovered, d.recovery_rate)) for d in e.domains]  # fmt: skip
    if len(e.domains) > 1:
        rows.append(("all", str(e.total("logged_runs")), str(e.total("escalations")),
                     str(e.total("stoploss_triggers")), str(e.total("escalated_runs")),
                     _recovered(e.total("recovered"), e.recovery_rate)))  # fmt: skip
    notes = [ESCALATION_CAPTION]
    if not e.total("escalated_runs"):
        notes.append(no_data(RECOVERY_NEEDS))
    unlogged = e.total("runs") - e.total("logged_runs")
    if unlogged:
        notes.append(f"{unlogged} runs without events (imported) not counted")
    caption = " · ".join(notes)
    return FittedTable("Escalations by domain", [Layout(headers, rows)], caption=caption)


def model_table(e: EscalationStats) -> FittedTable | str:
    models = [m for d in e.domains for m in d.models]
    if not models:
        return f"Model effectiveness: {no_data(MODELS_NEED)}"
    headers = ("domain", "model", "attempts", "solved", "solved/attempt", "model-s", "solved/model-s")
    rows = [(m.domain, m.model, str(m.attempts), str(m.solved), _num(m.solved_per_attempt, ".2f"),
             f"{m.model_s:.1f}", _num(m.solved_per_model_s, ".4f")) for m in models]  # fmt: skip
    short = [(m.domain, m.model, f"{m.solved}/{m.attempts} = {_num(m.solved_per_attempt, '.2f')}",
              f"{_num(m.solved_per_model_s, '.4f')} ({m.model_s:.0f} s)") for m in models]  # fmt: skip
    layouts = [Layout(headers, rows), Layout(("domain", "model", "solved/attempt", "solved/model-s"), short)]
    return FittedTable("Model effectiveness", layouts, key=(0, 1),
                       caption="attempts: scored iterations; model-s: generation seconds")


def queue_table(q: QueueEfficiency) -> Table:
    rows = [
        ("tasks queued", str(q.tasks)),
        ("average wait (queued -> first lease)",
         f"{_secs(q.avg_wait_s)} over {len(q.waits_s)} tasks" if q.waits_s else no_data(WAIT_NEEDS)),
        ("still waiting (never leased)", str(q.never_leased)),
        ("throughput", _throughput(q)),
        ("throughput while busy", f"{q.busy_throughput_per_h:.2f} tasks/h over {q.busy_h:.2f} h"
         if q.busy_throughput_per_h is not None and q.busy_h is not None else NONE_YET),
        ("ROI accuracy (predicted ETA)", "not recorded: the queue does not store the ETA it ranked by"),
        ("... replayed ETA error", _replayed(q.roi)),
        ("against FIFO", f"{q.fifo.gain:+.0%} ({q.fifo.basis})" if q.fifo and q.fifo.gain is not None
         else no_data(FIFO_NEEDS)),
    ]  # fmt: skip
    return _figures("Queue efficiency", rows)


def _throughput(q: QueueEfficiency) -> str:
    if q.throughput_per_h is None or q.window_h is None:
        return no_data(THROUGHPUT_NEEDS)
    return f"{q.throughput_per_h:.2f} tasks/h ({q.finished} finished in {q.window_h:.1f} h)"


def _replayed(roi: RoiAccuracy) -> str:
    if roi.mean_abs_error is None or roi.mean_ratio is None:
        return no_data(ROI_NEEDS)
    return f"{roi.mean_abs_error:.0%} mean |ETA - actual| / actual, actual/ETA {roi.mean_ratio:.2f} ({roi.tasks} tasks)"


def profiling_table(report: StatsReport) -> Table:
    s = report.profiling
    ratio = saved_ratio(s)
    rows = [
        ("tier 0 only / tier 1 iterations", f"{s.tier0_count} / {s.tier1_count}"),
        ("profiling time", f"{s.total_s:.1f} s"),
        ("saved against always full",
         f"{s.saved_s:.1f} s ({ratio:.0%})" if ratio is not None else no_data(SAVINGS_NEED)),
        ("regressions caught", f"{s.regressions_caught} of {s.regressions}" if s.regressions else NONE_YET),
    ]  # fmt: skip
    return _figures("Two-tier profiling", rows)


def meta_table(meta: dict) -> Table:
    b, error = meta["bias"], meta["avg_priority_error"]
    rows = [
        ("finished runs (all history)", str(meta["runs"])),
        ("bias hit rate", f"{_pct(meta['bias_hit_rate'])} ({b['hits']} of {b['followed']} followed)"
         if meta["bias_hit_rate"] is not None else no_data("runs started on a recommended model")),
        ("bias ignored", f"{b['ignored']} runs, {_pct(b['ignored_success_rate'])} solved"),
        ("no bias yet", f"{b['unbiased']} runs, {_pct(b['unbiased_success_rate'])} solved"),
        ("avg priority error", f"{error:.4f} ({meta['priority_error_runs']} runs)" if error is not None
         else no_data("a domain's second finished run")),
    ]  # fmt: skip
    return _figures("Meta-supervisor", rows)


def _figures(title: str, rows: list[tuple[str, str]]) -> Table:
    """A figure per row; the value wraps, so the two columns fit any console of 40 columns and more."""
    table = Table(title=title)
    table.add_column("figure", no_wrap=True)
    table.add_column("value", overflow="fold")
    for row in rows:
        table.add_row(*row)
    return table


def _recovered(n: int, rate: float | None) -> str:
    return f"{n} ({_pct(rate)})" if rate is not None else NONE_YET


def _num(x: float | None, fmt: str) -> str:
    return NONE_YET if x is None else format(x, fmt)


def _pct(x: float | None) -> str:
    return NONE_YET if x is None else f"{100 * x:.0f}%"


def _secs(s: float | None) -> str:
    if s is None:
        return NONE_YET
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"
