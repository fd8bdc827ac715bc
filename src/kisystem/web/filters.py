"""Jinja filters: how times, durations and numbers read on the pages."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any


def when(ts: str | None) -> str:
    """A stored ISO time as ``YYYY-MM-DD HH:MM:SS`` UTC ("" for none)."""
    if not ts:
        return ""
    try:
        return datetime.fromisoformat(ts).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return ts


def secs(value: float | None) -> str:
    """A duration: ``850 ms``, ``12.3 s``, ``4 m 05 s``, ``2 h 07 m``."""
    if value is None:
        return ""
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, seconds = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} m {seconds:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} m"


def num(value: float | None) -> str:
    """Thousands separated; floats with one decimal."""
    if value is None:
        return ""
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def score(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


FILTERS: dict[str, Callable[..., Any]] = {"when": when, "secs": secs, "num": num, "score": score}
