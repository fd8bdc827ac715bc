"""`kisystem profile stats`: what two-tier profiling cost and saved, from the learning database."""

from __future__ import annotations

import json

import click
from rich.table import Table

from kisystem.cli.context import AppContext, pass_app
from kisystem.loop.profiling import ProfileRecord, TimeSavings
from kisystem.store.learning import LearningStore


@click.group("profile")
def profile_group() -> None:
    """Two-tier profiling figures."""


@profile_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--runs", "limit", default=1000, show_default=True, type=click.IntRange(1),
              help="Look at the newest N runs.")
@click.option("--domain", default=None, help="Only runs of this domain.")
@pass_app
def stats(app: AppContext, as_json: bool, limit: int, domain: str | None) -> None:
    """Tier 0 / tier 1 counts and time, the saving against always profiling fully,
    and how many regressions tier 0 flagged got a full profile."""
    records, runs = _records(app, limit, domain)
    savings = TimeSavings.from_records(records)
    if as_json:
        click.echo(json.dumps({"db": str(app.paths.db), "runs": runs, "profiles": len(records),
                               **savings.to_dict()}, indent=2))
        return
    app.console.print(_table(savings, runs, len(records), str(app.paths.db)))


def _records(app: AppContext, limit: int, domain: str | None) -> tuple[list[ProfileRecord], int]:
    if not app.paths.db.exists():
        return [], 0
    records: list[ProfileRecord] = []
    with LearningStore.open(app.paths.db) as store:
        runs = store.recent_runs(limit, domain)
        for run in runs:
            found = (ProfileRecord.from_payload(run.run_id, e.payload)
                     for e in store.events(run.run_id) if e.kind == "profile")
            records.extend(r for r in found if r is not None)
    return records, len(runs)


def _table(s: TimeSavings, runs: int, profiles: int, db: str) -> Table:
    table = Table(title="Two-tier profiling", caption=f"{profiles} profiled iterations in {runs} runs · {db}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rate = "-" if s.catch_rate is None else f"{100 * s.catch_rate:.0f} %"
    for name, value in (
        ("tier 0 only (microbenchmark)", f"{s.tier0_count} iterations"),
        ("tier 1 (full profile)", f"{s.tier1_count} iterations"),
        ("microbenchmark time", f"{s.tier0_s:.1f} s"),
        ("full profiler time", f"{s.tier1_s:.1f} s"),
        ("profiling time in all", f"{s.total_s:.1f} s"),
        ("always full (estimate)", f"{s.always_full_s:.1f} s"),
        ("saved", f"{s.saved_s:.1f} s ({100 * s.saved_ratio:.0f} %)"),
        ("regressions flagged by tier 0", str(s.regressions)),
        ("... profiled fully (catch rate)", f"{s.regressions_caught} ({rate})"),
    ):
        table.add_row(name, value)
    return table
