"""What every command gets from the global options."""

from __future__ import annotations

from dataclasses import dataclass

import click
from rich.console import Console

from kisystem.paths import Paths


@dataclass
class AppContext:
    paths: Paths
    console: Console
    err_console: Console


def app_context() -> AppContext:
    """The AppContext of the running command (set up by the top-level group)."""
    return click.get_current_context().find_object(AppContext)


pass_app = click.make_pass_decorator(AppContext)
