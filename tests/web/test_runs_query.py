"""Keyset pagination of the Runs list: every run exactly once, in order, both ways, on the index."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from pathlib import Path

import pytest

from kisystem.store.learning import LearningStore, RunRecord
from kisystem.web.db import DashboardDb
from kisystem.web.runs import Cursor, RunFilter, runs_page
from tests.schedule.jobs.support import T0
from tests.web.support import client


def _record(i: int, ts_step: int, domain: str = "Python/General") -> RunRecord:
    ts = T0 + timedelta(seconds=(i // ts_step) * 60)  # ts_step runs share each start time: the run_id breaks ties
    return RunRecord(f"run{i:04d}", f"task-{i}", domain, "m", 1, 100.0, "success", None, None, 0.0, 0.0, 0.0,
                     ts, ts + timedelta(seconds=30), 10, 20, None, (), 30.0, None)


def _fill(path: Path, n: int, ts_step: int = 1, **kw) -> None:
    with LearningStore.open(path) as store:
        store.import_runs(_record(i, ts_step, **kw) for i in range(n))


@pytest.fixture
def ties(tmp_path: Path):
    _fill(tmp_path / "l.db", 10, ts_step=3)
    db = DashboardDb.open(tmp_path / "l.db")
    yield db
    db.close()


def test_walks_every_run_once_newest_first_and_back(ties: DashboardDb) -> None:
    expected = [f"run{i:04d}" for i in range(9, -1, -1)]  # same ts: run_id descending
    pages, cursor = [], None
    while True:
        page = runs_page(ties, RunFilter(), before=cursor, size=3)
        pages.append([r["run_id"] for r in page.rows])
        assert (page.newer is None) == (cursor is None)
        if page.older is None:
            break
        cursor = page.older
    assert [r for p in pages for r in p] == expected and [len(p) for p in pages] == [3, 3, 3, 1]
    back, newer = [], Cursor.parse(page.newer.token())
    while newer is not None:
        page = runs_page(ties, RunFilter(), after=newer, size=3)
        back.append([r["run_id"] for r in page.rows])
        assert page.older is not None
        newer = page.newer
    assert back == pages[-2::-1]


def test_filter_narrows_every_page(tmp_path: Path) -> None:
    _fill(tmp_path / "l.db", 6)
    with LearningStore.open(tmp_path / "l.db") as store:
        store.import_runs(_record(i, 1, domain="CUDA/Kernel") for i in range(100, 104))
    db = DashboardDb.open(tmp_path / "l.db")
    try:
        first = runs_page(db, RunFilter(domain="CUDA/Kernel"), size=3)
        second = runs_page(db, RunFilter(domain="CUDA/Kernel"), before=first.older, size=3)
        assert [r["run_id"] for r in first.rows + second.rows] == ["run0103", "run0102", "run0101", "run0100"]
        assert (first.matches, second.older) == (4, None)
        assert runs_page(db, RunFilter(q="task-10"), size=10).matches == 4  # task-100..103
    finally:
        db.close()


def test_pages_use_the_start_time_index(ties: DashboardDb) -> None:
    sql = "SELECT run_id FROM runs WHERE (ts, run_id) < (?, ?) ORDER BY ts DESC, run_id DESC LIMIT 51"
    plan = " ".join(str(r[-1]) for r in ties.rows(f"EXPLAIN QUERY PLAN {sql}", ("x", "y")))
    assert "idx_runs_ts" in plan and "TEMP B-TREE" not in plan


def test_runs_page_links_walk_120_runs(tmp_path: Path) -> None:
    _fill(tmp_path / "l.db", 120)
    with client(tmp_path / "l.db") as c:
        seen, url, pages = [], "/runs?q=task", []
        while url:
            page = c.get(url).text
            ids = re.findall(r'href="/runs/(run\d+)"', page)
            pages.append(ids)
            seen += ids
            older = re.search(r'href="([^"]+)" rel="next"', page)
            url = html.unescape(older.group(1)) if older else None
            assert url is None or "q=task" in url  # the search stays on every page
        assert [len(p) for p in pages] == [50, 50, 20]
        assert seen == [f"run{i:04d}" for i in range(119, -1, -1)]
        newer = html.unescape(re.search(r'href="([^"]+)" rel="prev"', page).group(1))
        assert re.findall(r'href="/runs/(run\d+)"', c.get(newer).text) == pages[1]


def test_a_search_counts_its_matches_up_to_the_cap(ties: DashboardDb, monkeypatch: pytest.MonkeyPatch) -> None:
    from kisystem.web import runs

    assert (runs_page(ties, RunFilter(q="task"), size=4).matches, runs_page(ties, RunFilter(q="task-1")).matches) == (
        10, 1)
    monkeypatch.setattr(runs, "COUNT_CAP", 3)
    page = runs_page(ties, RunFilter(q="task"), size=2)
    assert (page.matches, page.capped) == (3, True)
    assert (runs_page(ties, RunFilter(), size=2).matches, runs_page(ties, RunFilter(), size=2).capped) == (10, False)
