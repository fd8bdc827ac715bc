"""`kisystem serve`: the live dashboard and /metrics over the learning database (read-only)."""

from __future__ import annotations

import os

import click

from kisystem.cli.context import AppContext, pass_app
from kisystem.paths import DASHBOARD_TOKEN_ENV


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help=f"Address to listen on; anything but loopback needs {DASHBOARD_TOKEN_ENV}.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port to listen on (0: any free one).")
@pass_app
def serve(app: AppContext, host: str, port: int) -> None:
    """Serve the dashboard (overview, runs, models, domains, queue, profiling, improvement, alerts, stats)
    and /metrics until Ctrl-C.

    Reads the learning database (--db) read-only.  Listens on loopback by default; to listen
    elsewhere, set KISYSTEM_DASHBOARD_TOKEN to a secret: every request must then carry it
    (open a page once with ?token=SECRET, or send Authorization: Bearer SECRET).
    """
    # Imported here: the web stack loads only for this command.
    from kisystem.web.server import serve_dashboard

    serve_dashboard(app.paths.db, host, port, os.environ.get(DASHBOARD_TOKEN_ENV) or None, echo=click.echo,
                    inventory=app.inventory, settings=app.config, home=app.paths.home)
