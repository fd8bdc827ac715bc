"""The Stats page: the Phase 7 goals beside their targets, escalations and model effectiveness per domain, the
queue's efficiency, profiling savings and the meta-supervisor, from a database whose figures were worked out by
hand (``support_stats``); ``?days=``; an older schema; the recorded domain and model names stay text."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from kisystem.store import db as store_db
from kisystem.store.migrations import migrate
from tests.stats.support import CPP, DSP, PY
from tests.web.support import client
from tests.web.support_stats import HOSTILE_DOMAIN, HOSTILE_MODEL, NOW, seed_stats


@pytest.fixture
def page(tmp_path: Path) -> str:
    path = seed_stats(tmp_path / "learning.db")
    with client(path, clock=lambda: NOW) as c:
        got = c.get("/stats")
    assert got.status_code == 200
    return got.text


def _rows(page: str, css_class: str) -> list[list[str]]:
    table = re.search(rf'<table class="{css_class}">(.*?)</table>', page, re.DOTALL)
    assert table, f"no table {css_class}"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table.group(1), re.DOTALL)
    return [[" ".join(html.unescape(re.sub(r"<[^>]+>", "", c)).split())
             for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.DOTALL)] for r in rows if "<td" in r]  # fmt: skip


def _figures(page: str, css_class: str) -> dict[str, str]:
    return {row[0]: row[1] for row in _rows(page, css_class)}


def test_goals_beside_their_targets(page: str) -> None:
    goals = {row[0]: row[1:] for row in _rows(page, "goals")}
    assert goals["Model Selection Accuracy"][:3] == [">70%", "50% (1 of 2 runs)", "not met"]
    assert goals["Profiling Time Reduction"][:3] == ["40-55%", "56% (20.0 of 36.0 s)", "above range"]
    assert goals["Task Efficiency"][:3] == ["+30%", "+4% (3 tasks, 1 worker)", "not met"]
    assert goals["Error Recovery"][:3] == ["+25%", "50% (1 of 2 runs)", "met"]
    assert goals["Learning Speed"][2] == "not measured"
    assert 'class="outcome outcome-success">met<' in page and 'class="outcome outcome-aborted">above range<' in page


def test_escalations_and_model_effectiveness(page: str) -> None:
    escalations = {row[0]: row[1:] for row in _rows(page, "escalations")}
    assert escalations[PY] == ["5", "3", "3", "2", "1 (50%)"]  # runs with events, esc., stop-loss, escalated, recovered
    assert escalations[CPP] == ["1", "0", "1", "0", "0"]
    assert escalations[DSP] == ["0", "0", "0", "0", "0"]  # imported runs only
    assert escalations["all"] == ["7", "3", "4", "2", "1 (50%)"]
    assert "9 runs without events (imported) not counted." in page  # 8 of Audio/DSP, 1 of C++
    models = {(row[0], row[1]): row[2:] for row in _rows(page, "effectiveness")}
    assert models[(PY, "small")] == ["8", "2", "0.25", "74.0", "0.0270"]
    assert models[(PY, "big")] == ["4", "2", "0.50", "110.0", "0.0182"]
    assert models[(HOSTILE_DOMAIN, HOSTILE_MODEL)] == ["1", "1", "1.00", "4.0", "0.2500"]


def test_queue_profiling_and_meta_figures(page: str) -> None:
    queue = _figures(page, "queue-efficiency")
    assert queue["Tasks queued"] == "4" and queue["Still waiting (never leased)"] == "1"
    assert queue["Average wait (queued to first lease)"] == "3 m 50 s over 3 tasks"
    assert queue["Throughput"] == "1.50 tasks/h (3 finished in 2.0 h)"
    assert queue["Throughput while busy"] == "7.83 tasks/h over 0.38 h"  # first lease 10 s, last result 1390 s
    assert queue["Against FIFO"] == "+4% (3 tasks, 1 worker; weighted by explicit priority)"
    assert queue["ROI accuracy (replayed ETA error)"].startswith("no data yet (needs finished queued tasks")
    profiling = _figures(page, "profiling-savings")
    assert profiling["Tier 0 only / tier 1 iterations"] == "2 / 1" and profiling["Profiling time"] == "16.0 s"
    assert profiling["Saved against always profiling fully"] == "20.0 s (56%)"
    meta = _figures(page, "meta-stats")
    assert meta["Bias hit rate"] == "50% (1 of 2 followed)"
    assert 'href="/stats" aria-current="page">Stats<' in page


def test_recorded_names_stay_text(page: str) -> None:
    assert HOSTILE_DOMAIN not in page and HOSTILE_MODEL not in page
    assert html.escape(HOSTILE_DOMAIN, quote=False) in page and html.escape(HOSTILE_MODEL, quote=False) in page
    tags = re.findall(r"<script[^>]*>", page)
    assert all(re.fullmatch(r'<script src="/static/[\w.]+" defer>', t) for t in tags), tags


def test_days_limits_the_window_and_bad_days_are_refused(tmp_path: Path) -> None:
    path = seed_stats(tmp_path / "learning.db")
    with client(path, clock=lambda: NOW) as c:
        day = c.get("/stats", params={"days": "1"}).text
        three = c.get("/stats", params={"days": "3"}).text
        bad = [c.get("/stats", params={"days": d}) for d in ("0", "abc", "-3", "99999999")]
    assert _figures(day, "queue-efficiency")["Throughput"].endswith("(3 finished in 24.0 h)")
    assert "<strong>last day</strong>" in day and 'href="/stats?days=7"' in day
    assert "<strong>last 3 days</strong>" in three
    for got in bad:
        assert got.status_code == 400 and "days must be a whole number from 1 to 36500" in got.text


def test_an_older_schema_says_why_there_are_no_figures(tmp_path: Path) -> None:
    conn = store_db.connect(tmp_path / "v1.db")
    migrate(conn, target=1)  # runs and run_events only: no queue
    conn.close()
    with client(tmp_path / "v1.db", clock=lambda: NOW) as c:
        got = c.get("/stats")
    assert got.status_code == 200 and "Cannot compute the success metrics" in got.text
    assert "queue_transitions" in got.text and '<table class="goals">' not in got.text
