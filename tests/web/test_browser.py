"""The dashboard in a real browser: headless Chromium (Debian's, via selenium) over a live server.

Every page the nav links to (read from the DOM of ``/``, so new pages are covered as they land)
loads with 200, no console error (a CSP refusal or a script error is one), no smuggled script
run, and a filled table or a drawn chart; the overview's "in flight" panel follows run events as
the loop writes them; the Runs search filters; a run page shows its iterations and the model's
``<script>`` as text.  Screenshots go to $KISYSTEM_SCREENSHOTS (default: the test's tmp dir).

Without chromium/chromedriver/selenium this FAILS (``scripts/browser-tools.sh`` installs them;
CI runs it); ``KISYSTEM_NO_BROWSER=1`` skips it, saying so.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.schedule.jobs.support import PY
from tests.web.browser_support import (
    NO_BROWSER_ENV,
    SCREENSHOTS_ENV,
    WAIT_S,
    BrowserMissing,
    chrome,
    console_errors,
    find_binaries,
    live_dashboard,
    seed_showcase,
    visit_all,
)
from tests.web.support import HOSTILE_TASK, NOW, SCRIPT, Seeded, Writer

IN_FLIGHT = """
const rows = Array.from(document.querySelectorAll("#live table.in-flight tbody tr"));
return {count: document.querySelector("[data-testid=in-flight-count]").textContent.trim(),
        tasks: rows.map(r => r.cells[1].textContent.trim()),
        log: Array.from(document.querySelectorAll("#live-events tr"), r => r.cells[1].textContent)};
"""


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    if os.environ.get(NO_BROWSER_ENV) == "1":
        pytest.skip(f"{NO_BROWSER_ENV}=1: the real-browser dashboard test is switched off")
    try:
        binaries, missing = find_binaries(), None
    except BrowserMissing as err:
        missing = str(err)
    if missing:  # a failure, not a skip: CI installs the browser (scripts/browser-tools.sh)
        pytest.fail(missing, pytrace=False)
    browser = chrome(binaries)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def site(seeded: Seeded, driver: Any) -> Iterator[str]:
    """The dashboard over the seeded database, on the seed's clock; its base URL."""
    with live_dashboard(seeded, lambda: NOW) as base:
        try:
            yield base
        finally:
            driver.get("about:blank")  # closes the overview's event stream before the server stops
            console_errors(driver)


@pytest.fixture
def showcase(tmp_path: Path, driver: Any) -> Iterator[tuple[Seeded, str]]:
    """The dashboard over the seed plus every page's own additions (hostile names included); its base URL."""
    s, now = seed_showcase(tmp_path / "showcase")
    try:
        with live_dashboard(s, lambda: now) as base:
            try:
                yield s, base
            finally:
                driver.get("about:blank")
                console_errors(driver)
    finally:
        s.db.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    return Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path / "screenshots")


def _until(driver: Any, script: str, ready: Callable[[Any], bool], what: str) -> Any:
    """Poll ``script``'s result in the page until ``ready`` holds; the last result on success."""
    from selenium.webdriver.support.ui import WebDriverWait

    seen: list[Any] = []

    def probe(d: Any) -> bool:
        seen[:] = [d.execute_script(script)]
        return ready(seen[0])

    try:
        WebDriverWait(driver, WAIT_S, poll_frequency=0.1).until(probe)
    except Exception as err:  # a timeout: say what was seen last
        raise AssertionError(f"waited {WAIT_S:.0f} s for {what}; last seen: {seen[0] if seen else None}") from err
    return seen[0]


def test_every_nav_page_loads_clean_and_shows_data(showcase: tuple[Seeded, str], driver: Any, shots: Path) -> None:
    seeded, site = showcase
    checks = visit_all(driver, site, f"/runs/{seeded.ids['solved']}", shots)
    urls = [c.url for c in checks]
    print("\nbrowser covered:", ", ".join(u.removeprefix(site) for u in urls), f"\nscreenshots in {shots}")
    assert {site + "/", site + "/runs", site + f"/runs/{seeded.ids['solved']}"} <= set(urls)
    problems = {c.url.removeprefix(site): c.problems() for c in checks if c.problems()}
    assert not problems, problems
    for check in filter(lambda c: c.html, checks):
        assert check.state["title"].endswith("· kisystem"), check.state
    pngs = sorted(p.name for p in shots.glob("*.png"))
    assert {"overview.png", "runs.png", "run.png"} <= set(pngs)
    assert all((shots / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)


def test_overview_in_flight_follows_run_events(site: str, driver: Any, seeded: Seeded) -> None:
    driver.get(site + "/")
    _until(driver, "return document.getElementById('live-status').className", lambda c: "live" in c,
           "the event stream to connect")
    assert driver.execute_script(IN_FLIGHT)["tasks"] == ["long"]

    started = seeded.db.store.start_run("browser-live", PY, "small")  # the loop, in another connection
    seeded.db.store.append_event(started, "generate", {"iteration": 1, "model": "small"})
    seen = _until(driver, IN_FLIGHT, lambda s: s["count"] == "2", "the new run in flight")
    assert sorted(seen["tasks"]) == ["browser-live", "long"]
    assert "browser-live" in seen["log"]  # the live event log got it too

    Writer(seeded.db).finish(seeded.ids["running"], "small", "failed", 1)
    seen = _until(driver, IN_FLIGHT, lambda s: s["count"] == "1", "the finished run to leave")
    assert seen["tasks"] == ["browser-live"]
    assert console_errors(driver) == []


def test_overview_chart_is_drawn_from_the_seeded_runs(site: str, driver: Any) -> None:
    driver.get(site + "/")
    chart = driver.execute_script("""
        const el = document.querySelector("[data-chart='daily-chart-data']");
        const c = el.querySelector("canvas");
        const sum = a => a.reduce((x, y) => x + (y || 0), 0);
        return {drawn: el.dataset.drawn, size: [c.width, c.height], labels: el.uplot.series.map(s => s.label),
                solved: sum(el.uplot.data[1]), failed: sum(el.uplot.data[2])};
    """)
    assert chart["drawn"] == "true" and chart["size"][0] >= 300 and chart["size"][1] > 100
    assert chart["labels"][1:] == ["solved", "failed"]
    assert (chart["solved"], chart["failed"]) == (2, 1)  # "old" and "solved" succeeded, the C++ run failed


def test_runs_search_and_a_run_page_show_text_never_scripts(site: str, driver: Any, seeded: Seeded) -> None:
    from selenium.webdriver.common.by import By

    rows = ("return Array.from(document.querySelectorAll('#runs-table table.runs tbody tr'),"
            " r => r.cells[1].textContent)")
    driver.get(site + "/runs")
    assert sorted(driver.execute_script(rows)) == sorted(["long", HOSTILE_TASK, "add", "old-task"])
    assert driver.find_elements(By.CSS_SELECTOR, "main img") == []  # the HTML task id is text, not an <img>

    driver.find_element(By.CSS_SELECTOR, "form.search input[name=q]").send_keys("add")
    assert _until(driver, rows, lambda tasks: tasks == ["add"], "the search to filter the table") == ["add"]
    assert "q=add" in driver.current_url  # hx-push-url: the filtered list has its own address

    driver.find_element(By.LINK_TEXT, "add").click()
    _until(driver, "return location.pathname", lambda p: p == f"/runs/{seeded.ids['solved']}", "the run page")
    iterations = driver.execute_script("""return Array.from(document.querySelectorAll("table.iterations tbody tr"),
        r => [r.cells[1].textContent, r.cells[2].textContent.toLowerCase(), r.cells[4].textContent]);""")
    assert iterations == [["small", "test", "LOGIC"], ["big", "test", ""]]
    assert "small → big" in driver.find_element(By.CSS_SELECTOR, "ul.escalations").text
    assert SCRIPT in driver.find_element(By.CSS_SELECTOR, "#iteration-1 pre.code").text  # shown literally
    assert driver.execute_script("return [window.__xss || null, document.querySelectorAll('main script').length]") \
        == [None, 0]
    assert console_errors(driver) == []
