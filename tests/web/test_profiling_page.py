"""The Profiling page: two-tier profiling's tier counts and time saved, and each run's score trajectory."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from kisystem.web.profiling_view import trajectories
from tests.web.support import HOSTILE_TASK, Seeded, client
from tests.web.support_queue import PROFILED, seed_profiles
from tests.web.test_pages import _rows, _table


def _figures(page: str) -> dict[str, str]:
    return dict(_rows(_table(page, "profiling-savings")))


def _chart(page: str) -> dict:
    found = re.search(r'<script type="application/json" id="score-chart-data">(.*?)</script>', page, re.DOTALL)
    assert found, "no chart data"
    return json.loads(found.group(1))


def test_tier_counts_and_time_saved(seeded: Seeded) -> None:
    seed_profiles(seeded)
    with client(seeded.path) as c:
        day = c.get("/profiling", params={"days": "1"}).text
        every = c.get("/profiling", params={"days": "all"}).text
        default = c.get("/profiling").text
    # by hand: tiers 1, 0, 0; tier 0 takes 0.5 s each, the one full profile 10 s; always full = 3 * (0.5 + 10)
    assert _figures(day) == {
        "tier 0 only (microbenchmark)": "2 iterations", "tier 1 (full profile)": "1 iterations",
        "microbenchmark time": "1.5 s", "full profiler time": "10.0 s", "profiling time in all": "11.5 s",
        "always full (estimate)": "31.5 s", "time saved": "20.0 s (63 %)",
        "regressions flagged by tier 0": "1", "… profiled fully (catch rate)": "0 (0 %)",
    }  # fmt: skip
    everything = _figures(every)  # plus the run two days back: one full profile, 0.4 s + 6 s
    assert everything["tier 1 (full profile)"] == "2 iterations" and everything["profiling time in all"] == "17.9 s"
    assert everything["time saved"] == "20.0 s (53 %)"  # 20 of 37.9
    assert _figures(default) == everything  # 30 days by default
    assert '<strong aria-current="true">last day</strong>' in day and 'href="/profiling?days=all"' in day


def test_score_trajectories_as_chart_and_table(seeded: Seeded) -> None:
    runs = seed_profiles(seeded)
    with client(seeded.path) as c:
        page = c.get("/profiling").text
        one = c.get("/profiling", params={"task": PROFILED}).text
    rows = {r[1]: r for r in _rows(_table(page, "trajectories"))}
    assert rows[PROFILED][5] == "1: 40.0 (t1) → 2: 70.0 (t0) → 3: 90.0 (t0)"
    assert rows[PROFILED][6:] == ["90.0", "1"]
    assert rows["add"][5] == "1: 0.0 → 2: 100.0" and rows["older-task"][5] == "1: 55.0 (t1)"
    assert next(iter(rows)) == PROFILED  # newest first
    assert f'href="/runs/{runs["profiled"]}"' in page
    chart = _chart(page)
    assert chart["x"] == [1.0, 2.0, 3.0] and chart["time"] is False and chart["y_max"] == 100.0
    lines = {s["label"].split(" · ")[0]: s["values"] for s in chart["series"]}
    assert lines[PROFILED] == [40.0, 70.0, 90.0] and lines["add"] == [0.0, 100.0, None]
    assert 'data-multi-chart="score-chart-data"' in page and '<script src="/static/multi_chart.js" defer>' in page
    assert [r[1] for r in _rows(_table(one, "trajectories"))] == [PROFILED]
    assert [s["label"].split(" · ")[0] for s in _chart(one)["series"]] == [PROFILED]


def test_trajectories_are_bounded_to_the_newest_runs(seeded: Seeded) -> None:
    seed_profiles(seeded)
    with client(seeded.path) as c:
        db = c.app.state.dashboard.db
        newest = trajectories(db, read=2, charted=5)  # the running run (no score) and the profiled one
        assert [t.task for t in newest] == [PROFILED]
        assert [t.task for t in trajectories(db, charted=2)] == [PROFILED, HOSTILE_TASK]


def test_recorded_text_is_escaped(seeded: Seeded) -> None:
    seed_profiles(seeded)
    with client(seeded.path) as c:
        page = c.get("/profiling").text
    assert PROFILED not in page and "<b>" not in page and html.escape(PROFILED, quote=False) in page
    assert "<img src=x" not in page  # the seed's hostile task id, in the table and the chart's JSON
    tags = re.findall(r"<script[^>]*>", page)
    allowed = r'<script (src="/static/[\w.]+" defer|type="application/json" id="[\w-]+")>'
    assert tags and all(re.fullmatch(allowed, t) for t in tags), tags


def test_bad_window_and_empty_database(seeded: Seeded, tmp_path: Path) -> None:
    from kisystem.store import LearningStore

    with client(seeded.path) as c:
        for days in ("0", "x", "-1", "٣"):
            bad = c.get("/profiling", params={"days": days})
            assert bad.status_code == 400 and "bad days" in bad.text, days
        no_profiles = c.get("/profiling").text
    assert "No profiled iteration in finished runs in this window." in no_profiles
    LearningStore.open(tmp_path / "empty.db").close()
    with client(tmp_path / "empty.db") as c:
        empty = c.get("/profiling", params={"days": "all"})
    assert empty.status_code == 200 and "No run has logged a score yet." in empty.text
    assert "No profiled iteration in finished runs yet." in empty.text and 'aria-current="page">Profiling' in empty.text
