"""What every command gets from the global options: paths, consoles, config, inventory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import click
from rich.console import Console

from kisystem.paths import Paths

@dataclass
class AppContext:
    paths: Paths
    console: Console
    err_console: Console
    _cache: dict = field(default_factory=dict)

    @property
    def config_file(self) -> Path | None:
        """--config / KISYSTEM_CONFIG when given, else HOME/optimization_config.json if present."""
        from kisystem.config import config_path_for

        return config_path_for(self.paths)

    def loaded_config(self):
        """The effective OptimizationConfig with the source of every value (cached)."""
        from kisystem.config import load_config

        if "config" not in self._cache:
            self._cache["config"] = load_config(self.config_file)
        return self._cache["config"]

    @property
    def config(self):
        return self.loaded_config().config

    @property
    def inventory(self):
        from kisystem.models.inventory import load_inventory

        if "inventory" not in self._cache:
            cfg = self.config
            file = Path(cfg.inventory_file).expanduser() if cfg.inventory_file else None
            self._cache["inventory"] = load_inventory(cfg.model_profile, file)
        return self._cache["inventory"]


pass_app = click.make_pass_decorator(AppContext)
