"""`kisystem config ...`: show, validate and initialize the OptimizationConfig."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from kisystem.cli.context import AppContext, pass_app
from kisystem.config import (
    DEFAULT_FILENAME,
    KEYS,
    LoadedConfig,
    OptimizationConfig,
    config_path_for,
    default_json,
    flatten,
    load_config,
)
from kisystem.errors import KisystemError, UsageError


@click.group("config")
def config_group() -> None:
    """Show, validate or initialize the optimization configuration.

    Values come from defaults, then the config file (--config, else
    HOME/optimization_config.json if present), then KISYSTEM_<KEY> and
    KISYSTEM_<SECTION>__<KEY> environment variables.
    """


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print {values, sources} as JSON.")
@pass_app
def show(app: AppContext, as_json: bool) -> None:
    """Print the effective values and where each one came from."""
    loaded = load_config(config_path_for(app.paths))
    if as_json:
        click.echo(json.dumps({"values": loaded.config.to_dict(), "sources": loaded.sources}, indent=2))
    else:
        app.console.print(_table(loaded))


def _table(loaded: LoadedConfig) -> Table:
    table = Table(title="Optimization config", caption=f"file: {loaded.path or '(none, defaults only)'}")
    table.add_column("key", no_wrap=True)
    table.add_column("value")
    table.add_column("source", overflow="fold")
    values = flatten(loaded.config.to_dict())
    for key in KEYS:
        table.add_row(key, json.dumps(values[key]), _source_label(loaded.sources[key]))
    return table


def _source_label(source: str) -> str:
    # The file path is in the caption; repeating it on every row would only wrap.
    if source == "default":
        return "[dim]default[/dim]"
    return "file" if source.startswith("file:") else source


@config_group.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
def validate(file: Path) -> None:
    """Check FILE (no environment overrides); print `ok: FILE` or one line per problem."""
    OptimizationConfig.load(file)
    click.echo(f"ok: {file}")


@config_group.command("init")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@pass_app
def init(app: AppContext, force: bool) -> None:
    """Write the default config to HOME/optimization_config.json (or --config)."""
    path = app.paths.config or app.paths.home / DEFAULT_FILENAME
    if path.exists() and not force:
        raise UsageError(f"{path} already exists (use --force to overwrite)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(default_json(), encoding="utf-8")
    except OSError as err:
        raise KisystemError(f"cannot write {path}: {err.strerror or err}") from err
    click.echo(f"wrote {path}")


@config_group.command("versions")
@click.option("--json", "as_json", is_flag=True, help="Print the versions as JSON.")
@pass_app
def versions(app: AppContext, as_json: bool) -> None:
    """Configuration versions made by optimization plans; version 0 is the shipped configuration."""
    from kisystem.cli.optimize_cmd import optimization_store, version_json

    with optimization_store(app, create=False) as store:
        stored = store.versions() if store else []
    shipped_active = not any(v.active for v in stored)
    if as_json:
        shipped = {"version": 0, "state": "shipped", "active": shipped_active, "reason": "the shipped configuration"}
        click.echo(json.dumps([shipped, *(version_json(v) for v in stored)], indent=2))
        return
    click.echo(f"{'*' if shipped_active else ' '} 0  shipped  the shipped configuration")
    for v in stored:
        parent = f" (from {v.parent or 0})"
        click.echo(f"{'*' if v.active else ' '} {v.id}  {v.state}  {v.created:%Y-%m-%d %H:%M}{parent}  {v.reason}")


@config_group.command("rollback")
@click.argument("version", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the now active version as JSON.")
@pass_app
def rollback(app: AppContext, version: int, as_json: bool) -> None:
    """Make VERSION (a kept one, or 0: the shipped configuration) the active configuration again."""
    from kisystem.cli.optimize_cmd import optimization_store, version_json
    from kisystem.improve.versions import SHIPPED

    with optimization_store(app, create=False) as store:
        if store is None and version != SHIPPED:
            raise UsageError(f"no configuration version {version} (versions: {SHIPPED} = shipped, none yet)")
        active = store.rollback(version) if store else None
    if as_json:
        click.echo(json.dumps(version_json(active) if active else {"version": SHIPPED, "state": "shipped",
                                                                    "active": True}, indent=2))
    else:
        click.echo(f"active: version {active.id}" if active else f"active: the shipped configuration ({SHIPPED})")
