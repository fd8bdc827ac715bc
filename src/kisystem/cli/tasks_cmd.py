"""`kisystem tasks ...`: import benchmark problems as task specs and check spec files."""

from __future__ import annotations

from pathlib import Path

import click

from kisystem.cli.context import AppContext
from kisystem.domains import DEFAULT_DOMAINS
from kisystem.errors import UsageError
from kisystem.loop.humaneval import PROBLEM_COUNT, import_humaneval
from kisystem.loop.taskspec import TaskSpecError, expand_task_paths, load_task

PATH = click.Path(path_type=Path)


@click.group("tasks")
def tasks_group() -> None:
    """Import and check task specs."""


@tasks_group.group("import")
def import_group() -> None:
    """Write task specs for a benchmark suite."""


@import_group.command("humaneval")
@click.option("--out", "out_dir", type=PATH, required=True, help="Directory for the specs (created if missing).")
@click.option("--range", "span", metavar="A:B", help=f"Problems A to B-1, like a Python slice [default 0:{PROBLEM_COUNT}].")
def import_humaneval_cmd(out_dir: Path, span: str | None) -> None:
    """One spec per HumanEval problem: HumanEval_0.toml, HumanEval_1.toml, ..."""
    start, stop = parse_range(span, PROBLEM_COUNT)
    written = import_humaneval(out_dir, start, stop)
    click.echo(f"wrote {len(written)} task specs to {out_dir}")


@tasks_group.command("check")
@click.argument("paths", nargs=-1, required=True, type=PATH)
def check_cmd(paths: tuple[Path, ...]) -> None:
    """Validate spec files (directories: every *.toml inside); one line per bad file."""
    domains = _known_domains()
    bad = good = 0
    for file in _expand(paths):
        try:
            load_task(file, domains)
            good += 1
        except TaskSpecError as err:
            click.echo(f"error: {err}", err=True)
            bad += 1
    click.echo(f"{good} valid, {bad} invalid")
    if bad:
        click.get_current_context().exit(2)


def parse_range(span: str | None, count: int) -> tuple[int, int]:
    """``"A:B"`` (either end may be left out) as a non-empty half-open range inside 0..count."""
    if span is None:
        return 0, count
    head, colon, tail = span.partition(":")
    try:
        start = int(head) if head.strip() else 0
        stop = int(tail) if tail.strip() else count
    except ValueError:
        start = stop = -1
    if not colon or not 0 <= start < stop <= count:
        raise UsageError(f"--range {span!r}: expected A:B with 0 <= A < B <= {count}")
    return start, stop


def _expand(paths: tuple[Path, ...]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        try:
            files.extend(expand_task_paths([path]))
        except TaskSpecError as err:
            raise UsageError(str(err)) from None
    return files


def _known_domains() -> tuple[str, ...]:
    """The built-in domains plus those of the configured inventory, when run under `kisystem`."""
    app = click.get_current_context().find_object(AppContext)
    extra = tuple(app.inventory.domains) if app is not None else ()
    return DEFAULT_DOMAINS + tuple(d for d in extra if d not in DEFAULT_DOMAINS)
