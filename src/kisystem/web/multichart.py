"""The data block of a chart with one line per name (a model, a domain), drawn by ``static/multi_chart.js``.

uPlot wants one shared x column and a y column per line; a line without a point at some x gets a
null there (the script draws across such gaps), so names measured at different times share a chart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def multi_chart(lines: Mapping[str, Mapping[float, float | None]], *, y_label: str, time: bool = True,
                y_max: float | None = None) -> dict[str, Any]:  # fmt: skip
    """``{"x": [...], "series": [{"label": name, "values": [...]}], ...}`` from {name: {x: y}}, names sorted.

    ``time``: x is unix seconds (uPlot shows dates), else a plain number (a run's index).
    """
    xs = sorted({x for points in lines.values() for x in points})
    series = [{"label": name, "values": [lines[name].get(x) for x in xs]} for name in sorted(lines)]
    return {"x": xs, "series": series, "y_label": y_label, "time": time, "y_max": y_max}
