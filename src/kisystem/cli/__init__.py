"""The kisystem command line, one module per command group."""
