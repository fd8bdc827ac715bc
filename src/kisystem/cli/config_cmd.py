"""`kisystem config ...`: show and validate the OptimizationConfig."""

import click


@click.group("config")
def config_group() -> None:
    """Show or validate the optimization configuration."""
