"""The Overview, Runs and run pages over a seeded database, and the escaping of what runs recorded."""

from __future__ import annotations

import html
import json
import re
from datetime import timedelta

from kisystem.store.learning import OUTCOMES
from kisystem.web.filters import secs
from tests.schedule.jobs.support import T0
from tests.web.support import BAD_CODE, HOSTILE_TASK, NOW, SCRIPT, Seeded, client


def _table(page: str, css_class: str) -> str:
    found = re.search(rf'<table class="{css_class}">(.*?)</table>', page, re.DOTALL)
    assert found, f"no table {css_class}"
    return found.group(1)


def _rows(table: str) -> list[list[str]]:
    """Each row's cell texts, tags stripped."""
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.DOTALL)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.DOTALL)]
            for r in rows if "<td" in r]


def test_overview_counts_in_flight_queue_and_chart(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        page = c.get("/").text
    outcomes = {row[0]: (row[1], row[2]) for row in _rows(_table(page, "outcomes"))}
    assert set(outcomes) == set(OUTCOMES)
    assert outcomes["success"] == ("1", "2")  # the old one is three days back
    assert outcomes["failed"] == ("1", "1") and outcomes["running"] == ("1", "1") and outcomes["error"] == ("0", "0")
    (flight,) = _rows(_table(page, "in-flight"))
    assert flight[1:4] == ["long", "Python/General", "small"]
    started = seeded.db.store.get_run(seeded.ids["running"]).ts
    assert flight[4] == secs((NOW - started).total_seconds()) and flight[5].startswith("generate (iteration 1)")
    queue = dict(_rows(_table(page, "queue")))
    assert (queue["queued"], queue["leased"], queue["cancelled"], queue["succeeded"]) == ("1", "1", "1", "0")
    seconds = {row[0]: (row[1], row[2]) for row in _rows(_table(page, "model-seconds"))}
    assert seconds == {"big": ("42.0 s", "50.0 s"), "small": ("4.0 s", "4.0 s")}
    chart = json.loads(re.search(r'id="daily-chart-data">(.*?)</script>', page, re.DOTALL).group(1))
    day = {x: (s, f) for x, s, f in zip(chart["x"], chart["solved"], chart["failed"], strict=True)}
    assert len(day) == 30 and day[T0.replace(hour=0).timestamp()] == (1, 1)
    assert day[(T0 - timedelta(days=3)).replace(hour=0).timestamp()] == (1, 0)
    assert sum(chart["solved"]) == 2 and sum(chart["failed"]) == 1
    assert 'data-live="/events"' in page and 'data-chart="daily-chart-data"' in page


def test_live_fragment_follows_the_database(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        assert "long" in c.get("/overview/live").text
        seeded.db.store.finish_run(seeded.ids["running"], _result("small"))
        live = c.get("/overview/live").text
    assert "No run in flight." in live and "<html" not in live
    outcomes = {row[0]: row[2] for row in _rows(_table(live, "outcomes"))}
    assert outcomes["running"] == "0" and outcomes["failed"] == "2"


def test_runs_list_search_and_filters(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        every = _rows(_table(c.get("/runs").text, "runs"))
        assert [r[1] for r in every] == ["long", HOSTILE_TASK, "add", "old-task"]  # newest first
        assert every[2][3:7] == ["big", "success", "100.0", "2"]
        assert [r[1] for r in _rows(_table(c.get("/runs", params={"q": "ADD"}).text, "runs"))] == ["add"]
        assert [r[1] for r in _rows(_table(c.get("/runs", params={"q": "c++"}).text, "runs"))] == [HOSTILE_TASK]
        by_model = c.get("/runs", params={"model": "small", "outcome": "running"}).text
        assert [r[1] for r in _rows(_table(by_model, "runs"))] == ["long"] and "1 run matches" in by_model
        none = c.get("/runs", params={"q": "100%_"}).text
        assert "No run matches." in none and "0 runs match" in none
        fragment = c.get("/runs", params={"domain": "C++/System"}, headers={"HX-Request": "true"}).text
    assert fragment.startswith('<div id="runs-table">') and HOSTILE_TASK not in fragment
    assert html.escape(HOSTILE_TASK, quote=False) in fragment


def test_runs_list_pages_by_cursor(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        first = c.get("/runs").text
        assert "Older" not in first and "Newer" not in first
        bad = c.get("/runs", params={"before": "no-separator"})
    assert bad.status_code == 400 and "bad page cursor" in bad.text


def test_run_page_shows_iterations_code_output_and_escalation(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        page = c.get(f"/runs/{seeded.ids['solved']}").text
    iterations = _rows(_table(page, "iterations"))
    assert [r[:6] for r in iterations] == [
        ["1", "small", "TEST", "0.0", "LOGIC", "The tests failed; see the excerpt"],
        ["2", "big", "TEST", "100.0", "", ""],
    ]
    assert [r[6:] for r in iterations] == [["4.0 s", "100"], ["12.0 s", "300"]]
    assert "after iteration 1, small → big" in page
    assert html.escape("AssertionError: add(1, 2) returned -1 <b>bold</b>", quote=False) in page
    assert html.escape("return a + b") in page and "small → big" in page


def test_recorded_text_is_escaped_and_never_runs(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        run = c.get(f"/runs/{seeded.ids['solved']}")
        pages = [run.text, c.get("/runs").text, c.get("/").text, c.get(f"/runs/{seeded.ids['failed']}").text]
    assert html.escape(BAD_CODE, quote=False) in run.text  # the code is shown, as text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run.text
    for page in pages:
        assert SCRIPT not in page and HOSTILE_TASK not in page and "<b>bold</b>" not in page
        tags = re.findall(r"<script[^>]*>", page)
        allowed = r'<script (src="/static/[\w.]+" defer|type="application/json" id="[\w-]+")>'  # no inline code
        assert tags and all(re.fullmatch(allowed, t) for t in tags), tags
    assert "script-src 'self'" in run.headers["content-security-policy"]


def test_unknown_run_and_page_are_404(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        run = c.get("/runs/nope<i>")
        page = c.get("/no/such/page")
        asset = c.get("/static/missing.js")
    assert run.status_code == 404 and "no run nope&lt;i&gt;" in run.text
    assert page.status_code == 404 and "Overview" in page.text
    assert asset.status_code == 404


def test_static_assets_are_packaged(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        for name, marker in (("htmx.min.js", "htmx"), ("uPlot.iife.min.js", "uPlot"), ("uPlot.min.css", ".uplot"),
                             ("dashboard.js", "EventSource"), ("dashboard.css", "--fg")):
            got = c.get(f"/static/{name}")
            assert got.status_code == 200 and marker in got.text, name


def _result(model: str):
    from kisystem.store.learning import RunResult

    return RunResult(model=model, iter=1, score_final=0.0, outcome="failed")


def test_every_page_works_on_an_empty_and_on_the_oldest_schema(tmp_path) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    from kisystem.store import LearningStore, db
    from kisystem.store.migrations import migrate

    LearningStore.open(tmp_path / "empty.db").close()
    conn = db.connect(tmp_path / "v1.db")
    migrate(conn, target=1)  # runs and run_events only: no aggregates, queue or health history
    conn.close()
    # empty.db: 6 of the database + 3 of the success metrics (goal targets, profiling tiers, computed at);
    # v1.db lacks the queue, so it has no success metrics (/stats says why)
    for name, families in (("empty.db", 9), ("v1.db", 4)):
        with client(tmp_path / name) as c:
            for url in ("/", "/runs", "/overview/live", "/runs?q=x&outcome=failed"):
                assert c.get(url).status_code == 200, (name, url)
            overview = c.get("/").text
            assert "No run in flight." in overview
            assert ("This database has no queue yet." in overview) == (name == "v1.db")
            assert len(list(text_string_to_metric_families(c.get("/metrics").text))) == families
