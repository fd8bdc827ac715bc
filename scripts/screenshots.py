#!/usr/bin/env python
"""Regenerate docs/screenshots/*.png: every dashboard page in headless Chromium, over the test seed.

The same code as the browser test (tests/web/browser_support.py): the seed of tests/web/support.py
plus each page's own additions, served as ``kisystem serve`` serves it, each page the nav links to
and one run page checked (HTTP 200, no console error, a filled table or drawn chart) and shot.
Needs chromium and chromedriver (scripts/browser-tools.sh installs them) and selenium (the test
extra).  Exits 1 when a page has a problem or a PNG is over --max-kb.

Usage: python scripts/screenshots.py [--out docs/screenshots] [--max-height 1400] [--max-kb 300]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.web.* are the seed and the browser code

# Starlette 1.x asks for httpx2 in its TestClient, which the seed module imports (as tests/web/conftest.py says).
warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")

from tests.web import browser_support as bs

NO_SAMPLE = "No sample yet"  # the Overview's machine panel before the first resource sample
SAMPLE_WAIT_S = 15.0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        binaries = bs.find_binaries()
    except bs.BrowserMissing as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="kisystem-") as tmp:
        seeded, now = bs.seed_showcase(Path(tmp) / "home")
        driver = bs.chrome(binaries)
        try:
            with bs.live_dashboard(seeded, lambda: now) as base:
                _wait_for_a_sample(driver, base)
                checks = bs.visit_all(driver, base, f"/runs/{seeded.ids['solved']}", None)
                shots = [_shoot(driver, c.url, args) for c in checks if c.html]
                driver.get("about:blank")
        finally:
            driver.quit()
            seeded.db.close()
    return _report(checks, shots, args.max_kb * 1024)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots", help="where the PNGs go")
    parser.add_argument("--max-height", type=int, default=1400, help="cut a taller page here (pixels)")
    parser.add_argument("--max-kb", type=int, default=300, help="fail when a PNG is bigger")
    return parser


def _wait_for_a_sample(driver, base: str) -> None:
    """Let the Overview's machine panel have its first resource sample (taken a few seconds after the start)."""
    deadline = time.monotonic() + SAMPLE_WAIT_S
    while time.monotonic() < deadline:
        driver.get(base + "/")
        if NO_SAMPLE not in driver.find_element("tag name", "body").text:
            return
        time.sleep(1.0)


def _shoot(driver, url: str, args: argparse.Namespace) -> Path:
    driver.get(url)
    time.sleep(0.3)  # charts are drawn, the live stream connected
    return bs.screenshot(driver, args.out / f"{bs.shot_name(url)}.png", args.max_height)


def _report(checks: list[bs.PageCheck], shots: list[Path], max_bytes: int) -> int:
    failed = False
    for check in checks:
        for problem in check.problems():
            print(f"{check.url}: {problem}", file=sys.stderr)
            failed = True
    for path in shots:
        size = path.stat().st_size
        big = size > max_bytes
        failed |= big
        print(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}  {size / 1024:.0f} KB"
              + ("  (too big)" if big else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
