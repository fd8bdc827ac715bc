"""`kisystem ray ...`: start a Ray node that serves models, and show the cluster.

``kisystem queue run --executor ray`` then runs each attempt on a node that serves its
model (see :mod:`kisystem.executors.ray_executor`).
"""

from __future__ import annotations

import json
import subprocess

import click
from rich.text import Text

from kisystem.cli.context import AppContext, pass_app
from kisystem.cli.layout import FittedTable, Layout
from kisystem.executors import require_ray

NODE_HEADERS = ("node", "address", "state", "CPU", "GPU", "models: slots in use/total", "running")


@click.group("ray")
def ray_group() -> None:
    """Run the queue on a Ray cluster: nodes declare the models they serve."""


@ray_group.command("node", context_settings={"ignore_unknown_options": True})
@click.option("--serves", "serves", multiple=True, metavar="MODEL[=SLOTS]",
              help="A model this node serves, with its generation slots [default: 1]; repeatable.")
@click.option("--ollama", metavar="URL", help="Also serve every model this node's Ollama lists (1 slot each).")
@click.option("--address", metavar="HOST:PORT", help="Join the cluster whose head is there [default: start a head].")
@click.option("--gpus", type=click.IntRange(0, 64), help="GPUs this node offers to CUDA tasks [default: Ray's count].")
@click.option("--dry-run", is_flag=True, help="Print the `ray start` command instead of running it.")
@click.argument("ray_args", nargs=-1, type=click.UNPROCESSED)
@pass_app
def node(app: AppContext, serves: tuple[str, ...], ollama: str | None, address: str | None, gpus: int | None,
         dry_run: bool, ray_args: tuple[str, ...]) -> int:  # fmt: skip
    """Start a Ray node (`ray start`) that declares the models it serves; further `ray start`
    options go after `--` (e.g. `-- --port 6379 --num-cpus 8`)."""
    from kisystem.executors.cluster import node_command, ollama_models, parse_serves

    served = {**(ollama_models(ollama) if ollama else {}), **parse_serves(serves)}
    cmd = node_command(served, address=address, gpus=gpus, ray_args=ray_args)
    if dry_run:
        return click.echo(" ".join(_quoted(cmd)))
    require_ray()
    app.err_console.print(f"ray node serving {', '.join(f'{m} ({n:.0f})' for m, n in served.items())}",
                          markup=False, highlight=False)
    return subprocess.run(cmd, check=False).returncode


def _quoted(cmd: list[str]) -> list[str]:
    import shlex

    return [shlex.quote(part) for part in cmd]


@ray_group.command("status")
@click.option("--address", default="auto", show_default=True, help="The cluster: auto, or HEAD_HOST:PORT.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@pass_app
def status(app: AppContext, address: str, as_json: bool) -> None:
    """Nodes, the models they serve with their slots, and which attempt runs where."""
    from kisystem.executors.cluster import cluster_status
    from kisystem.executors.ray_executor import RayExecutor, RaySettings

    executor = RayExecutor(settings=RaySettings(address=address))
    executor.connect()
    nodes, note = cluster_status(executor.ray)
    if as_json:
        return click.echo(json.dumps({"nodes": [n.as_dict() for n in nodes], "note": note}, indent=2))
    rows = [(n.node_id[:8], n.address, "alive" if n.alive else "dead", f"{n.cpus:g}", f"{n.gpus:g}",
             Text(", ".join(f"{m} {u:g}/{t:g}" for m, (u, t) in sorted(n.slots.items())) or "-"),
             Text("; ".join(n.running) or "-")) for n in nodes]  # fmt: skip
    app.console.print(FittedTable(f"Ray cluster at {address}", [Layout(NODE_HEADERS, rows)], key=(0,)))
    if note:
        app.err_console.print(f"note: {note}", markup=False, highlight=False)
