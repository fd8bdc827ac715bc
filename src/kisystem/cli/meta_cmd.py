"""`kisystem meta ...`: what the meta-supervisor reads from the learning database.

Also ``meta_scale_command``, the ``bench meta-scale`` command (registered on the bench
group by ``main``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from kisystem.cli.context import AppContext, pass_app
from kisystem.routing.meta import BIAS_MIN_RATE, BIAS_MIN_RUNS, MetaSupervisor
from kisystem.store.learning import LearningStore

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group("meta")
def meta_group() -> None:
    """Priorities and model bias learned from the learning database (read-only)."""


@contextmanager
def open_meta(app: AppContext) -> Iterator[MetaSupervisor]:
    """The supervisor over --db; a database that does not exist yet reads as empty (and stays absent)."""
    if not app.paths.db.exists():
        yield MetaSupervisor(None, app.config)
        return
    with LearningStore.open(app.paths.db) as store:
        yield MetaSupervisor(store, app.config)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _note_disabled(app: AppContext, meta: MetaSupervisor) -> None:
    if not meta.enabled:
        app.err_console.print("[yellow]meta-supervisor disabled (enable_meta_supervisor = false)[/yellow]")


@meta_group.command("priorities")
@click.option("--top", "top_n", type=click.IntRange(min=1), default=5, show_default=True, help="How many domains.")
@JSON_OPTION
@pass_app
def priorities(app: AppContext, top_n: int, as_json: bool) -> None:
    """Domains by priority P(d), highest first."""
    with open_meta(app) as meta:
        _note_disabled(app, meta)
        ranked = meta.next_priorities(top_n)
        inputs = {i.domain: i for i in meta.domain_inputs()}
    if as_json:
        return _echo_json([{"domain": d, "priority": p} for d, p in ranked])
    table = Table(title="Domain priorities", caption="P = 0.5(1-sr) + 0.2/(1+t) + 0.2 min(1,c/20) + 0.1 R")
    for col in ("domain", "priority", "success rate", "avg time", "runs", "R"):
        table.add_column(col)
    for domain, score in ranked:
        i = inputs[domain]
        avg = "-" if i.avg_time is None else f"{i.avg_time:.0f} s"
        table.add_row(domain, f"{score:.3f}", f"{i.success_rate:.0%}", avg, str(i.run_count), f"{i.recency:+.1f}")
    app.console.print(table)


@meta_group.command("bias")
@JSON_OPTION
@pass_app
def bias(app: AppContext, as_json: bool) -> None:
    """The start model recommended per domain (weighted success >= 0.65 over >= 5 runs)."""
    with open_meta(app) as meta:
        _note_disabled(app, meta)
        evidence = {(e.domain, e.model): e for e in meta.evidence()}
        chosen = {d: evidence[(d, m)] for d, m in meta.recommend_model_bias().items()}
    if as_json:
        return _echo_json({d: {"model": e.model, "confidence": e.weighted_success_rate, "runs": e.runs}
                           for d, e in chosen.items()})  # fmt: skip
    table = Table(title="Model bias")
    for col in ("domain", "model", "weighted success", "runs", "solved"):
        table.add_column(col)
    for domain, e in chosen.items():
        table.add_row(domain, e.model, f"{e.weighted_success_rate:.2f}", str(e.runs), str(e.successes))
    if chosen:
        app.console.print(table)
    rest = [e for e in evidence.values() if e.domain not in chosen]
    for line in gate_distance(rest) if rest or not chosen else []:
        app.console.print(line)


def gate_distance(evidence: list) -> list[str]:
    """Why no start model is recommended for the other domains: how far each pair is from the gate."""
    if not evidence:
        return ["no model is recommended: the learning database has no finished runs yet "
                f"(a model needs {BIAS_MIN_RUNS} runs of a domain at a weighted success of {BIAS_MIN_RATE:.2f})"]
    lines = [f"not yet recommended (needs {BIAS_MIN_RUNS} runs at >= {BIAS_MIN_RATE:.2f}):"]
    for e in sorted(evidence, key=lambda e: (e.domain, e.model)):
        missing = [f"{BIAS_MIN_RUNS - e.runs} more runs"] if e.runs < BIAS_MIN_RUNS else []
        if e.weighted_success_rate < BIAS_MIN_RATE:
            missing.append(f"success {e.weighted_success_rate:.2f} < {BIAS_MIN_RATE:.2f}")
        lines.append(f"  {e.domain} · {e.model}: {e.runs} runs, {e.successes} solved; {', '.join(missing)}")
    return lines


@meta_group.command("explain")
@click.argument("domain")
@JSON_OPTION
@pass_app
def explain_cmd(app: AppContext, domain: str, as_json: bool) -> None:
    """The four terms of DOMAIN's priority and their inputs."""
    with open_meta(app) as meta:
        data = meta.explain_priority(domain)
    if as_json:
        return _echo_json(data)
    table = Table(title=f"Priority of {domain}: {data['priority_score']:.4f}")
    table.add_column("term")
    table.add_column("value")
    for name, value in data["factors"].items():
        table.add_row(name, f"{value:+.5f}")
    avg = "-" if data["avg_time"] is None else f"{data['avg_time']:.1f} s"
    for name, shown in (("success_rate", f"{data['success_rate']:.2%}"), ("avg_time", avg),
                        ("run_count", str(data["run_count"]))):  # fmt: skip
        table.add_row(f"[dim]{name}[/dim]", shown)
    app.console.print(table)


@meta_group.command("stats")
@JSON_OPTION
@pass_app
def stats(app: AppContext, as_json: bool) -> None:
    """Bias hit rate and average priority error, from a replay of the whole history."""
    with open_meta(app) as meta:
        data = meta.get_statistics()
    if as_json:
        return _echo_json(data)
    b = data["bias"]
    table = Table(title=f"Meta-supervisor statistics ({data['runs']} finished runs)")
    table.add_column("measure")
    table.add_column("value")
    table.add_row("bias hit rate", f"{_pct(data['bias_hit_rate'])} ({b['hits']} of {b['followed']} followed)")
    table.add_row("bias ignored", f"{b['ignored']} runs, {_pct(b['ignored_success_rate'])} solved")
    table.add_row("no bias yet", f"{b['unbiased']} runs, {_pct(b['unbiased_success_rate'])} solved")
    error = data["avg_priority_error"]
    table.add_row("avg priority error", "-" if error is None else f"{error:.4f} ({data['priority_error_runs']} runs)")
    app.console.print(table)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


@click.command("meta-scale")
@click.option("--runs", type=click.IntRange(min=1), default=1_000_000, show_default=True, help="Synthetic runs.")
@click.option("--db", "db", type=click.Path(path_type=Path), help="Keep (or reuse) the database here.")
@click.option("--repeats", type=click.IntRange(min=1), default=20, show_default=True,
              help="Timed repeats from the aggregates (the median is shown).")
@JSON_OPTION
@pass_app
def meta_scale_command(app: AppContext, runs: int, db: Path | None, repeats: int, as_json: bool) -> None:
    """next_priorities + recommend_model_bias at scale: aggregates against full-scan SQL."""
    from kisystem.bench.meta_scale import TARGET_MS, run_meta_scale

    if db is None or not db.exists():
        app.err_console.print(f"building a learning database with {runs:,} runs ...")
    result = run_meta_scale(runs, db, repeats=repeats)
    if as_json:
        return _echo_json({**asdict(result), "ratio": result.ratio, "target_ms": TARGET_MS})
    table = Table(title=f"Meta-supervisor at {result.runs:,} runs")
    for col in ("source", "next_priorities + recommend_model_bias"):
        table.add_column(col)
    table.add_row("aggregates", f"{result.aggregate_ms:.2f} ms (median of {repeats})")
    table.add_row("full-scan SQL", f"{result.scan_ms:.0f} ms")
    table.add_row("ratio", f"{result.ratio:,.0f}x")
    table.add_row("same answers", "yes" if result.agree else "[red]NO[/red]")
    verdict = "[green]met[/green]" if result.meets_target else "[red]missed[/red]"
    table.add_row(f"target < {TARGET_MS:.0f} ms", verdict)
    if result.build_s:
        table.add_row("database build", f"{result.build_s:.1f} s")
    app.console.print(table)
