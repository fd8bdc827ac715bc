"""A real dashboard in a real browser: Debian's headless Chromium driven by selenium over a live server.

Shared by ``test_browser.py`` and ``scripts/screenshots.py`` (the README's pictures come from the
same code the test checks).  The binaries are passed explicitly (``/usr/bin/chromium``,
``/usr/bin/chromedriver``, as ``scripts/browser-tools.sh`` installs them), so selenium-manager is
never asked to download a driver.  selenium is imported lazily: a machine without it gets the
clear message of :class:`BrowserMissing`, not an import error at collection.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import uvicorn

from kisystem.errors import KisystemError
from kisystem.web.app import create_app
from kisystem.web.db import DashboardDb
from kisystem.web.events import Stream
from kisystem.web.security import LOOPBACK_HOSTS
from kisystem.web.server import bind
from kisystem.web.setup import configure
from tests.web.support import Seeded
from tests.web.support_improve import seed_improvement
from tests.web.support_models import bias_runs, health_after_runs, hostile
from tests.web.support_queue import seed_profiles, seed_queue

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

NO_BROWSER_ENV = "KISYSTEM_NO_BROWSER"  # "1": skip the browser test (where no chromium can be installed)
SCREENSHOTS_ENV = "KISYSTEM_SCREENSHOTS"  # where the test saves its screenshots (default: its tmp dir)
CHROMIUM_ENV = "KISYSTEM_CHROMIUM"  # override the browser binary
CHROMEDRIVER_ENV = "KISYSTEM_CHROMEDRIVER"  # override the driver binary
PORTS = range(18560, 18600)  # the dashboard's port (18431-18434, 8765 belong to others; 18517 must stay closed)
WINDOW = (1400, 1000)
MAX_SHOT_HEIGHT = 2200  # a full-page screenshot is cut here (keeps the PNGs small)
WAIT_S = 15.0
# A stream ends after 2 s and the browser resumes it (Last-Event-ID): the live test crosses reconnects, and a
# stream the server has not yet seen closed (it notices on its next write) ends by itself before the shutdown's grace.
LIVE = Stream(poll_s=0.1, lifetime_s=2.0)
CHROME_ARGS = ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW[0]},{WINDOW[1]}",
               "--hide-scrollbars", "--disable-dev-shm-usage", "--no-first-run", "--disable-extensions",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio")
# Any alert/confirm/prompt is recorded, not shown: a script smuggled into a page leaves window.__xss behind.
ALERT_TRAP = """
for (const name of ["alert", "confirm", "prompt"]) {
  window[name] = function (msg) { window.__xss = name + ": " + String(msg); };
}
"""
IGNORED_CONSOLE = ("/favicon.ico",)  # the browser asks for one by itself; the dashboard has none
PAGE_STATE = """
const main = document.querySelector("main");
const nav = performance.getEntriesByType("navigation")[0];
const charts = Array.from(document.querySelectorAll("[data-chart]")).map(function (el) {
  const c = el.querySelector("canvas");
  return c ? [c.width, c.height] : [0, 0];
});
return {
  status: nav ? nav.responseStatus : null,
  type: document.contentType,
  title: document.title,
  rows: main ? main.querySelectorAll("table:not(.u-legend) tbody tr").length : 0,
  charts: charts,
  canvases: main ? Array.from(main.querySelectorAll("canvas")).filter(c => c.width > 0 && c.height > 0).length : 0,
  text: document.body ? document.body.innerText.trim().length : 0,
  xss: window.__xss || null,
};
"""


class BrowserMissing(RuntimeError):
    """No chromium, chromedriver or selenium here: what to install, in one line."""


@dataclass(frozen=True)
class Binaries:
    chromium: str
    chromedriver: str


def find_binaries() -> Binaries:
    """Debian's chromium and chromedriver (or the env overrides), and selenium importable."""
    try:
        import selenium  # noqa: F401
    except ImportError as err:
        raise BrowserMissing("selenium is not installed: pip install -e '.[test]'") from err
    chromium = _find(CHROMIUM_ENV, "chromium", "chromium-browser")
    driver = _find(CHROMEDRIVER_ENV, "chromedriver")
    missing = [name for name, path in (("chromium", chromium), ("chromedriver", driver)) if not path]
    if missing:
        raise BrowserMissing(f"{' and '.join(missing)} not found: run scripts/browser-tools.sh as root "
                             "(apt-get install chromium chromium-driver), or set KISYSTEM_NO_BROWSER=1 to skip")
    return Binaries(str(chromium), str(driver))


def _find(env: str, *names: str) -> str | None:
    """The file ``env`` names (None when it is not one), else the first of ``names`` on PATH."""
    given = os.environ.get(env)
    if given:
        return given if Path(given).is_file() else None
    return next(filter(None, map(shutil.which, names)), None)


def seed_showcase(root: Path) -> tuple[Seeded, datetime]:
    """The dashboard seed plus what each page's own tests add (improvement and alerts, queue, profiling, models
    and domains), so every page has something to show, hostile names included; and the dashboard's clock."""
    s = seed_improvement(root).seeded
    seed_queue(s)
    seed_profiles(s)
    bias_runs(s)
    hostile(s)
    health_after_runs(s, "small", 2)
    s.db.clock.advance(minutes=1)
    return s, s.db.clock()


def chrome(binaries: Binaries) -> WebDriver:
    """Headless Chromium with its console log kept and the alert trap armed on every page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binaries.chromium
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=binaries.chromedriver), options=options)
    driver.set_page_load_timeout(30)
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": ALERT_TRAP})
    return driver


@contextmanager
def live_dashboard(s: Seeded, clock: Callable[[], datetime]) -> Iterator[str]:
    """The dashboard over ``s`` as ``kisystem serve`` sets it up (the seed's fleet, whose endpoint refuses, and
    configuration; approving on), under uvicorn in a thread on a free 185xx loopback port; yields its base URL."""
    dash = DashboardDb.open(s.path)
    sock = _free_socket()
    app = create_app(dash, clock=clock, allowed_hosts=LOOPBACK_HOSTS, stream=LIVE)
    configure(app, config=s.db.config, inventory=s.db.inventory, home=s.db.root)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=int(LIVE.lifetime_s) + 2)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="dashboard", daemon=True)
    thread.start()
    try:
        _wait(lambda: server.started or not thread.is_alive(), "the dashboard to start")
        if not server.started:
            raise RuntimeError("the dashboard did not start (see the log above)")
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        dash.close()


def _free_socket() -> socket.socket:
    for port in PORTS:
        try:
            return bind("127.0.0.1", port)
        except KisystemError:  # in use: try the next one
            continue
    raise RuntimeError(f"no free port in {PORTS.start}-{PORTS.stop - 1}")


def _wait(ready: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.05)


@dataclass
class PageCheck:
    """What one loaded page looked like to the browser, and what is wrong with it."""

    url: str
    state: dict[str, Any]
    console: list[str] = field(default_factory=list)

    @property
    def html(self) -> bool:
        return self.state.get("type") == "text/html"

    def problems(self) -> list[str]:
        s, found = self.state, []
        if s.get("status") != 200:
            found.append(f"HTTP status {s.get('status')}")
        found += [f"console: {line}" for line in self.console]
        if s.get("xss"):
            found.append(f"a script ran: {s['xss']}")
        if not self.html:
            return found + ([] if s.get("text") else ["an empty document"])
        undrawn = [i for i, (w, h) in enumerate(s.get("charts", [])) if not (w > 0 and h > 0)]
        if undrawn:
            found.append(f"chart(s) {undrawn} not drawn")
        if not s.get("rows") and not s.get("canvases"):
            found.append("neither a filled table nor a drawn chart in <main>")
        return found


def console_errors(driver: WebDriver) -> list[str]:
    """The browser's SEVERE console lines since the last call (failed loads, CSP refusals, script errors)."""
    return [e["message"] for e in driver.get_log("browser")
            if e.get("level") == "SEVERE" and not any(s in e["message"] for s in IGNORED_CONSOLE)]


def check_page(driver: WebDriver, url: str) -> PageCheck:
    """Load ``url`` and look at it (console errors of this load only)."""
    console_errors(driver)  # drop what earlier pages left
    driver.get(url)
    time.sleep(0.2)  # a deferred script's late console error (or a chart drawn on a timer) shows up
    return PageCheck(url, driver.execute_script(PAGE_STATE), console_errors(driver))


def nav_links(driver: WebDriver, base: str) -> list[str]:
    """Every same-origin page the header's nav links to, as it stands in the DOM of ``/`` (in order)."""
    driver.get(base + "/")
    hrefs = driver.execute_script("return Array.from(document.querySelectorAll('header nav a[href]'), a => a.href)")
    origin = urlsplit(base).netloc
    return list(dict.fromkeys(h.split("#")[0] for h in hrefs if urlsplit(h).netloc == origin))


def shot_name(url: str) -> str:
    """``/`` -> overview, ``/runs`` -> runs, ``/runs/<id>`` -> run, ``/a/b`` -> a-b."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if not parts:
        return "overview"
    if parts[0] == "runs" and len(parts) > 1:
        return "run"
    return "-".join(parts)


def screenshot(driver: WebDriver, path: Path, max_height: int = MAX_SHOT_HEIGHT) -> Path:
    """The whole page (up to ``max_height`` px tall) as a PNG at ``path``."""
    height = int(driver.execute_script("return Math.ceil(document.documentElement.scrollHeight)"))
    width = int(driver.execute_script("return document.documentElement.clientWidth"))
    clip = {"x": 0, "y": 0, "width": width, "height": max(1, min(height, max_height)), "scale": 1}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "clip": clip,
                                                             "captureBeyondViewport": True})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def visit_all(driver: WebDriver, base: str, run_path: str, shots: Path | None) -> list[PageCheck]:
    """Each nav page and the run page ``run_path``: checked, and shot into ``shots`` (HTML pages only)."""
    checks = []
    for url in [*nav_links(driver, base), base + run_path]:
        check = check_page(driver, url)
        if shots is not None and check.html:
            screenshot(driver, shots / f"{shot_name(url)}.png")
        checks.append(check)
    return checks
