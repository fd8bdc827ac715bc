"""Benchmarks: figures measured in one run, printed as tables and saved as JSON."""
