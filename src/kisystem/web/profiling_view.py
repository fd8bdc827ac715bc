"""What the Profiling page shows: two-tier profiling's tier counts and time saved, and score trajectories.

The savings are :func:`kisystem.stats.profiling.profile_savings` over a time window, the figures
``kisystem stats`` and ``kisystem profile stats`` print (:class:`~kisystem.loop.profiling.TimeSavings`).
A trajectory is one run's score per iteration, from its ``score`` events (the last one of an
iteration counts; a failed generation scores None), beside how each iteration was profiled.  Only
the newest :data:`RUNS_READ` runs are read for them, so the page stays fast on any history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from kisystem.errors import UsageError
from kisystem.loop.profiling import TimeSavings
from kisystem.stats.common import Window, no_data
from kisystem.stats.profiling import SAVINGS_NEED, profile_savings, saved_ratio
from kisystem.store.learning import LearningStore
from kisystem.web.db import DashboardDb
from kisystem.web.filters import when
from kisystem.web.multichart import multi_chart

DEFAULT_DAYS = 30
WINDOW_CHOICES: tuple[int | None, ...] = (1, 7, 30, None)  # None: all history
RUNS_READ = 60  # newest runs read for trajectories (of these, the ones with scores are charted)
RUNS_CHARTED = 12

_RUNS = "SELECT run_id, task, domain, model, outcome, ts FROM runs {where} ORDER BY ts DESC, run_id DESC LIMIT ?"
_EVENTS = """
SELECT run_id, kind, json_extract(payload, '$.iteration') AS iteration, json_extract(payload, '$.score') AS score,
       json_extract(payload, '$.tier') AS tier
FROM run_events WHERE run_id IN ({marks}) AND kind IN ('score', 'profile') ORDER BY id
"""


@dataclass
class Trajectory:
    """One run's scores by iteration (1-based) and the profiling tier of each profiled iteration."""

    run_id: str
    task: str
    domain: str
    model: str
    outcome: str
    ts: str
    scores: dict[int, float | None] = field(default_factory=dict)
    tiers: dict[int, int] = field(default_factory=dict)

    @property
    def points(self) -> list[tuple[int, float | None, int | None]]:
        """(iteration, score, tier) in iteration order."""
        return [(i, self.scores[i], self.tiers.get(i)) for i in sorted(self.scores)]

    @property
    def best(self) -> float | None:
        scored = [s for s in self.scores.values() if s is not None]
        return max(scored) if scored else None

    @property
    def full_profiles(self) -> int:
        return sum(t == 1 for t in self.tiers.values())


@dataclass(frozen=True)
class ProfilingPage:
    window: Window
    savings: TimeSavings
    trajectories: list[Trajectory]
    chart: dict[str, Any]
    task: str = ""

    @property
    def saved_ratio(self) -> float | None:
        return saved_ratio(self.savings)

    @property
    def savings_need(self) -> str:
        return no_data(SAVINGS_NEED)

    @property
    def profiled(self) -> int:
        return self.savings.tier0_count + self.savings.tier1_count


def parse_days(text: str | None) -> int | None:
    """``?days=``: a whole number of days, or ``all``; absent means :data:`DEFAULT_DAYS`."""
    if text is None or text == "":
        return DEFAULT_DAYS
    if text == "all":
        return None
    if not (text.isascii() and text.isdigit()) or int(text) < 1:
        raise UsageError(f"bad days {text!r}: give a whole number of days (1 or more), or 'all'")
    return int(text)


def window_links(days: int | None, task: str = "") -> list[tuple[str, str | None]]:
    """(label, link) of each window choice; the current one has no link."""
    links = []
    for choice in WINDOW_CHOICES:
        label = "all history" if choice is None else "last day" if choice == 1 else f"last {choice} days"
        query = {"days": "all" if choice is None else choice, **({"task": task} if task else {})}
        links.append((label, None if choice == days else f"/profiling?{urlencode(query)}"))
    return links


def profiling_page(db: DashboardDb, store: LearningStore, now: datetime, days: int | None,
                   task: str = "") -> ProfilingPage:
    """The savings over the last ``days`` days (None: all history) and the newest runs' trajectories."""
    window = Window(now, days)
    found = trajectories(db, task)
    return ProfilingPage(window, profile_savings(store, window), found, score_chart(found), task)


def trajectories(db: DashboardDb, task: str = "", read: int = RUNS_READ,
                 charted: int = RUNS_CHARTED) -> list[Trajectory]:
    """The newest runs (of ``task``, if given) that logged a score, newest first: at most ``charted``."""
    where, params = ("WHERE task = ?", (task,)) if task else ("", ())
    runs = {r["run_id"]: Trajectory(r["run_id"], r["task"], r["domain"], r["model"], r["outcome"], r["ts"])
            for r in db.rows(_RUNS.format(where=where), (*params, read))}  # fmt: skip
    if not runs:
        return []
    for e in db.rows(_EVENTS.format(marks=", ".join("?" * len(runs))), tuple(runs)):
        iteration = e["iteration"]
        if not isinstance(iteration, int):
            continue
        run = runs[e["run_id"]]
        if e["kind"] == "score":
            run.scores[iteration] = float(e["score"]) if isinstance(e["score"], int | float) else None
        elif isinstance(e["tier"], int):
            run.tiers[iteration] = e["tier"]
    return [t for t in runs.values() if t.scores][:charted]


def score_chart(found: list[Trajectory]) -> dict[str, Any]:
    """For ``multi_chart.js``: x the iteration, a line per run labelled by its task and start, y the score."""
    lines: dict[str, dict[float, float | None]] = {}
    for t in found:
        label = f"{t.task} · {when(t.ts)[5:16]}"
        label = label if label not in lines else f"{label} · {t.run_id[:8]}"
        lines[label] = {float(i): score for i, score in t.scores.items()}
    return multi_chart(lines, y_label="score", time=False, y_max=100.0)
