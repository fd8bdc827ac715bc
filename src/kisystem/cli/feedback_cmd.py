"""`kisystem feedback ...`: the feedback loop over the learning database (seed C's feedback CLI)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.table import Table

from kisystem.cli.context import AppContext, pass_app
from kisystem.errors import UsageError
from kisystem.improve.feedback import FeedbackEntry, FeedbackLoop
from kisystem.improve.learnings import Learning
from kisystem.improve.patterns import DetectedPattern
from kisystem.store.learning import LearningStore
from kisystem.store.migrations import FEEDBACK_SOURCES, FEEDBACK_TYPES

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
DAYS_OPTION = click.option("--days", type=click.IntRange(min=1), default=None,
                           help="Window in days [default: feedback.pattern_lookback_days, 7].")


@click.group("feedback")
def feedback_group() -> None:
    """Feedback per model: record and rate results, find patterns, draw learnings."""


@contextmanager
def open_feedback(app: AppContext, *, create: bool = False) -> Iterator[FeedbackLoop | None]:
    """The feedback loop over --db; None for a database that does not exist yet (reads as
    empty and stays absent) unless ``create``."""
    if not create and not app.paths.db.exists():
        yield None
        return
    with LearningStore.open(app.paths.db) as store:
        yield FeedbackLoop(store, app.config.feedback)


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _no_agent(agent: str) -> UsageError:
    return UsageError(f"no feedback recorded for agent {agent!r} (agents with feedback: none yet)")


@feedback_group.command("status")
@JSON_OPTION
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """What the feedback tables hold and the pattern thresholds."""
    with open_feedback(app) as fb:
        data = fb.status() if fb else _empty_status(app)
    if as_json:
        return _echo_json(data)
    table = Table(title="Feedback loop")
    table.add_column("measure")
    table.add_column("value")
    table.add_row("entries", str(data["entries"]))
    table.add_row("agents", str(data["agents"]))
    table.add_row("last feedback", data["last_feedback"] or "-")
    table.add_row("patterns stored", str(data["patterns"]))
    table.add_row("learnings stored", str(data["learnings"]))
    table.add_row("by source", _counts(data["by_source"]))
    table.add_row("by type", _counts(data["by_type"]))
    t = data["thresholds"]
    table.add_row("thresholds", f"frequency >= {t['min_frequency']}, confidence >= {t['min_confidence']}, "
                                f"{t['lookback_days']} days")
    app.console.print(table)


def _empty_status(app: AppContext) -> dict[str, Any]:
    s = app.config.feedback
    return {"entries": 0, "agents": 0, "last_feedback": None, "patterns": 0, "learnings": 0, "by_source": {},
            "by_type": {}, "thresholds": {"min_frequency": s.pattern_min_frequency,
                                          "min_confidence": s.pattern_min_confidence,
                                          "lookback_days": s.pattern_lookback_days}}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


@feedback_group.command("record", help=(
    f"Record one feedback entry. TYPE is one of {', '.join(FEEDBACK_TYPES)}; SCORE is 0..1 "
    "(always 0 for failure; 1-5 for user_rating)."))
@click.argument("agent")
@click.argument("operation")
@click.argument("feedback_type", metavar="TYPE")
@click.argument("score", metavar="SCORE")
@click.option("--source", default="user", show_default=True, help=f"One of {', '.join(FEEDBACK_SOURCES)}.")
@click.option("--detail", "details", multiple=True, metavar="KEY=VALUE", help="A detail (repeatable).")
@click.option("--context", "context", multiple=True, metavar="KEY=VALUE",
              help="Context, e.g. domain=C++/System (repeatable).")
@JSON_OPTION
@pass_app
def record(app: AppContext, agent: str, operation: str, feedback_type: str, score: str, source: str,
           details: tuple[str, ...], context: tuple[str, ...], as_json: bool) -> None:
    value = _number(score, "score")
    with open_feedback(app, create=True) as fb:
        entry = fb.record_feedback(agent, operation, feedback_type, value, _pairs(details, "--detail"), source,
                                   _pairs(context, "--context"))
    if as_json:
        return _echo_json(_entry_dict(entry))
    app.console.print(f"recorded {entry.type} feedback #{entry.id} for {entry.agent_id} "
                      f"({entry.operation_id}): score {entry.score:.2f}")


def _number(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"{what} must be a number, got {text!r}") from None


def _pairs(items: tuple[str, ...], option: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} takes KEY=VALUE, got {item!r}")
        out[key] = _value(value)
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)  # numbers, true/false, quoted strings
    except ValueError:
        return text


def _entry_dict(entry: FeedbackEntry) -> dict[str, Any]:
    return {"id": entry.id, "ts": entry.ts.isoformat(), "agent_id": entry.agent_id,
            "operation_id": entry.operation_id, "type": entry.type, "score": entry.score, "source": entry.source,
            "details": entry.details, "context": entry.context}


@feedback_group.command("rate")
@click.argument("run_id")
@click.argument("rating")
@click.option("--comment", help="What was good or bad about the result.")
@JSON_OPTION
@pass_app
def rate(app: AppContext, run_id: str, rating: str, comment: str | None, as_json: bool) -> None:
    """Rate a run's result 1-5 (for the model it ended on); RUN_ID may be a unique prefix."""
    value = _rating(rating)
    with open_feedback(app) as fb:
        if fb is None:
            raise UsageError(f"no run with id {run_id!r}: the learning database {app.paths.db} does not exist")
        entry = fb.rate_run(run_id, value, comment)
    if as_json:
        return _echo_json(_entry_dict(entry))
    app.console.print(f"rated run {entry.context['run_id']} ({entry.agent_id}, {entry.context['task']}) "
                      f"{value}/5")


def _rating(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"rating {text!r} is not allowed (allowed: a whole number 1..5)") from None


@feedback_group.command("patterns")
@click.argument("agent", required=False)
@DAYS_OPTION
@JSON_OPTION
@pass_app
def patterns(app: AppContext, agent: str | None, days: int | None, as_json: bool) -> None:
    """Detect recurring patterns (failure, success, quality, performance, behavior) and store them."""
    with open_feedback(app) as fb:
        if fb is None and agent:
            raise _no_agent(agent)
        if fb is not None and agent:
            fb.require_agent(agent)
        found = fb.detect_patterns(agent, days) if fb else []
    if as_json:
        return _echo_json([p.to_dict() for p in found])
    if not found:
        return app.console.print(_nothing("patterns", app, agent))
    app.console.print(_patterns_table(found))


def _patterns_table(found: list[DetectedPattern]) -> Table:
    table = Table(title="Feedback patterns")
    for col in ("type", "pattern", "n", "confidence"):
        table.add_column(col)
    for p in found:
        table.add_row(f"{p.pattern_type}/{p.kind}" if p.kind != p.pattern_type else p.pattern_type,
                      p.description, f"{p.frequency}/{p.total}", f"{p.confidence:.2f}")
    return table


def _nothing(what: str, app: AppContext, agent: str | None) -> str:
    s = app.config.feedback
    who = f" for {agent}" if agent else ""
    return (f"no {what}{who}: nothing recurs at least {s.pattern_min_frequency} times with confidence >= "
            f"{s.pattern_min_confidence} in the window")


@feedback_group.command("learnings")
@click.argument("agent", required=False)
@JSON_OPTION
@pass_app
def learnings(app: AppContext, agent: str | None, as_json: bool) -> None:
    """Generate learnings from the patterns (of AGENT, or of every agent) and store them."""
    with open_feedback(app) as fb:
        if fb is None and agent:
            raise _no_agent(agent)
        if fb is not None and agent:
            fb.require_agent(agent)
        found = fb.generate_learnings(agent) if fb else []
    if as_json:
        return _echo_json([item.to_dict() for item in found])
    if not found:
        return app.console.print(_nothing("learnings", app, agent))
    app.console.print(_learnings_table(found))


def _learnings_table(found: list[Learning]) -> Table:
    table = Table(title="Learnings")
    for col in ("type", "agent", "title", "description", "impact", "patterns"):
        table.add_column(col)
    for item in found:
        table.add_row(item.learning_type, item.agent_id, item.title, item.description, f"{item.impact:.2f}",
                      ", ".join(map(str, item.pattern_ids)))
    return table


@feedback_group.command("summary")
@click.argument("agent")
@DAYS_OPTION
@JSON_OPTION
@pass_app
def summary(app: AppContext, agent: str, days: int | None, as_json: bool) -> None:
    """AGENT's feedback over the last days: counts and means per type, sources, domains, patterns."""
    with open_feedback(app) as fb:
        if fb is None:
            raise _no_agent(agent)
        data = fb.summary(fb.require_agent(agent), days)
    if as_json:
        return _echo_json(data.to_dict())
    rate_text = "-" if data.success_rate is None else f"{data.success_rate:.0%}"
    table = Table(title=f"Feedback of {agent}, last {data.days} days: {data.entries} entries, success {rate_text}")
    for col in ("type", "count", "mean score"):
        table.add_column(col)
    for type_, s in data.by_type.items():
        table.add_row(type_, str(s.count), f"{s.mean:.2f}")
    app.console.print(table)
    app.console.print(f"sources: {_counts(data.by_source)}; domains: {_counts(data.by_domain)}")
    for p in data.patterns:
        app.console.print(f"pattern ({p.pattern_type}, {p.confidence:.2f}): {p.description}")


@feedback_group.command("stats")
@click.argument("agent", required=False)
@JSON_OPTION
@pass_app
def stats(app: AppContext, agent: str | None, as_json: bool) -> None:
    """The kept score aggregates per agent and feedback type."""
    with open_feedback(app) as fb:
        if fb is None and agent:
            raise _no_agent(agent)
        if fb is not None and agent:
            fb.require_agent(agent)
        data = fb.stats(agent) if fb else {"entries": 0, "agents": 0, "aggregates": []}
    if as_json:
        return _echo_json(data)
    table = Table(title=f"Feedback statistics ({data['entries']} entries, {data['agents']} agents)")
    for col in ("agent", "type", "count", "mean", "min", "max", "last"):
        table.add_column(col)
    for a in data["aggregates"]:
        table.add_row(a["agent_id"], a["type"], str(a["count"]), _score(a["mean"]), _score(a["min"]),
                      _score(a["max"]), _score(a["last"]))
    app.console.print(table)


def _score(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"
