"""What ``kisystem serve`` loaded beyond the database, handed to the pages that need it, in one call.

The configuration and the inventory rank the domains and the queue (meta-supervisor weights, start
models), say which backends to ask what they have loaded, and, with the home directory, let the
Improvement page approve plans.  A dashboard made without them (tests, an older caller) still shows
every page: loaded states read "unknown", rankings use the default weights, approving is off.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette

from kisystem.config import OptimizationConfig
from kisystem.models.inventory import Inventory
from kisystem.web import pages_improve, pages_models
from kisystem.web.queue_view import OrderingSettings


def configure(app: Starlette, *, config: OptimizationConfig | None, inventory: Inventory | None,
              home: Path | None) -> None:
    pages_models.configure(app, inventory=inventory, config=config)
    pages_improve.configure_approval(app, config=config, inventory=inventory, home=home)
    if config is not None:
        app.state.ordering_settings = OrderingSettings(config, inventory)
    app.state.dashboard.stats.config = config
