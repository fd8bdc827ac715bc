"""kisystem: a learning build-and-optimize loop for local LLMs."""

__version__ = "0.1.0"
