"""`kisystem models ...`: pull, serve and list models."""

import click


@click.group("models")
def models_group() -> None:
    """Pull, serve and list models."""
