"""`kisystem ensemble ask|solve`: a question or a task answered by several models at once."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
from rich.table import Table

from kisystem.cli.context import AppContext, pass_app
from kisystem.cli.run_cmd import judged_label
from kisystem.errors import UsageError

TIER_HELP = "simple | medium | complex | expert [default: classified from the prompt]"


@click.group("ensemble")
def ensemble_group() -> None:
    """The adaptive ensemble: a tier of the fleet answers at once and a consensus picks the answer.

    The tier (classified from the prompt, or --tier) names how many models and samples
    answer and how long they may take (`kisystem config show` lists the ensemble.* keys).
    """


@ensemble_group.command("ask")
@click.argument("prompt")
@click.option("--tier", help=TIER_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the query cache.")
@pass_app
def ask(app: AppContext, prompt: str, tier: str | None, as_json: bool, no_cache: bool) -> int:
    """The ensemble's answer to PROMPT ('-' reads it from stdin): the answer, the members, their times
    and the consensus's confidence."""
    from kisystem.ensemble.classifier import parse_tier

    chosen_tier = parse_tier(tier) if tier else None  # a usage error before any model starts
    text = sys.stdin.read() if prompt == "-" else prompt
    if not text.strip():
        raise UsageError("the question is empty")
    result = asyncio.run(_run(app, lambda ens: ens.ask(text, chosen_tier, use_cache=not no_cache), cache=not no_cache))
    _show(app, result, as_json)
    return 0 if result.answer.strip() else 1


@ensemble_group.command("solve")
@click.argument("task_file", type=click.Path(path_type=Path))
@click.option("--tier", help=TIER_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON on stdout.")
@pass_app
def solve(app: AppContext, task_file: Path, tier: str | None, as_json: bool) -> int:
    """TASK_FILE through the ensemble: every candidate judged in the sandbox, the best score wins;
    exit 0 when it reaches the task's target score."""
    from kisystem.ensemble.classifier import parse_tier
    from kisystem.loop.taskspec import load_task

    chosen_tier = parse_tier(tier) if tier else None
    task = load_task(task_file, app.inventory.domains)
    if not task.trusted:
        app.err_console.print(f"[yellow]warning: {task.id} has no \\[judge]: its result is self-reported by the "
                              "program and cannot be trusted[/yellow]")
    result = asyncio.run(_run(app, lambda ens: ens.solve(task, chosen_tier), cache=False))
    _show(app, result, as_json, judged_by=task.judged_by)
    return 0 if result.solved else 1


async def _run(app: AppContext, call, *, cache: bool):
    from kisystem.ensemble.ensemble import Ensemble
    from kisystem.loop.session import loop_session

    warn = lambda msg: app.err_console.print(f"[yellow]warning: {msg}[/yellow]")
    async with loop_session(app.config, app.inventory, app.paths, warn=warn) as sup:
        return await call(Ensemble.for_supervisor(sup, app.paths.workspaces_dir, cache=cache))


def _show(app: AppContext, result, as_json: bool, judged_by: str | None = None) -> None:
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    app.console.print(summary(result, judged_by), markup=False, highlight=False)
    if result.rounds:
        app.console.print(members_table(result))
    shown = result.consensus.code if result.kind == "solve" else result.answer  # a task's chosen code, as judged
    app.console.print(shown or "(no answer)", markup=False, highlight=False, soft_wrap=True)


def summary(result, judged_by: str | None = None) -> str:
    """One line: tier, how the answer was chosen, how sure, and what it cost."""
    figures = result.figures()
    if result.cached is not None:
        return (f"from the query cache (tier {result.tier}): {figures.get('method')} consensus, "
                f"confidence {figures.get('confidence', 0):.2f}, agreement {figures.get('agreement', 0):.2f}")
    answered = sum(a.ok for r in result.rounds for a in r.fanout.answers)
    asked = sum(len(r.fanout.members) for r in result.rounds)
    parts = [f"tier {result.tier}", f"{answered} of {asked} members answered",
             f"{figures['method']} consensus", f"confidence {figures['confidence']:.2f}",
             f"agreement {figures['agreement']:.2f}", f"{result.wall_s:.1f} s wall, {result.model_s:.1f} model-s"]
    if result.fallback:
        parts.append("after a fallback to the tier below")
    saved = sum(r.saved for r in result.rounds)
    if saved:
        parts.append(f"early stop: {saved} member(s) not waited for")
    if result.target is not None:
        judged = f", {judged_label(judged_by)}" if judged_by else ""
        parts.append(("solved" if result.solved else "not solved") + judged)
    return "; ".join(parts)


def members_table(result) -> Table:
    t = Table(title=f"ensemble {result.ensemble_id}")
    for col in ("round", "model", "sample", "temp", "seconds", "tokens", "result", "chosen"):
        t.add_column(col)
    for number, r in enumerate(result.rounds, 1):
        for a in r.fanout.answers:
            judged = next((c for c in r.candidates if c.answer is a), None)
            status = (f"score {judged.score:.0f}" if judged and judged.score is not None else "answered") if a.ok \
                else ("dropped: " if a.dropped else "failed: ") + (a.error or "empty answer")
            chosen = r.consensus.chosen is not None and r.consensus.chosen.answer is a
            t.add_row(f"{number}{' (fallback)' if r.fallback else ''}", a.member.model, str(a.member.sample),
                      f"{a.member.temperature:g}", f"{a.seconds:.1f}",
                      str(a.generation.completion_tokens if a.generation else 0), status, "*" if chosen else "")
    return t
