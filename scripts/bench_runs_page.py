#!/usr/bin/env python
"""The dashboard's pages with 100,000 runs in the learning database: how long each takes.

Fills a fresh database (in a temporary folder unless --db is given) with --runs finished runs
(5 domains, 4 models, starts 90 s apart, through LearningStore.import_runs, so the aggregates and
indexes are the real ones) and 10 runs in flight with a few events each, then times requests
through Starlette's TestClient (in process: routing, the read-only queries, the Jinja rendering;
no network), --repeat times each after one warm-up:

  first page     /runs
  deep page      /runs?before=<cursor of the run at 90% depth>   (keyset: no OFFSET)
  filtered       /runs?domain=CUDA/Kernel&outcome=failed
  search         /runs?q=task-4242                              (a substring: scans until 50 match)
  overview       /
  metrics        /metrics                                        (after its first scrape)
  models ... stats  the other pages, each at /NAME

and prints each one's first request (the warm-up: the answer folds and the success metrics are
computed then) and the min and median milliseconds of the rest.  Not a test: figures depend on the machine.

Usage: python scripts/bench_runs_page.py [--runs 100000] [--repeat 20] [--db PATH] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from kisystem.store.learning import LearningStore, RunRecord
from kisystem.web.app import create_app
from kisystem.web.db import DashboardDb

with warnings.catch_warnings():  # Starlette 1.x would like httpx2 for its TestClient; httpx works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

DOMAINS = ("Python/General", "C++/System", "CUDA/Kernel", "DSP/Audio", "Tests/Docs")
MODELS = ("small:1.5b", "mid:7b", "big:32b", "huge:70b")
OUTCOMES = ("success", "success", "failed", "exhausted", "error")
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def records(n: int, seed: int = 1) -> Iterator[RunRecord]:
    rng = random.Random(seed)
    for i in range(n):
        ts = T0 + timedelta(seconds=i * 90 + rng.random())
        outcome = rng.choice(OUTCOMES)
        yield RunRecord(f"{rng.getrandbits(128):032x}", f"task-{i % 5000}", rng.choice(DOMAINS), rng.choice(MODELS),
                        rng.randint(1, 5), 100.0 if outcome == "success" else round(rng.random() * 80, 1), outcome,
                        None, None, 1.0, 2.0, 0.0, ts, ts + timedelta(seconds=60), 300, 150, None, (), 60.0, None)


def fill(path: Path, n: int, in_flight: int = 10) -> float:
    """``n`` finished runs, then ``in_flight`` running ones with a few events each (the overview's live list)."""
    started = time.perf_counter()
    end = T0 + timedelta(seconds=n * 90)
    with LearningStore.open(path, clock=lambda: end) as store:
        store.import_runs(records(n))
        for i in range(in_flight):
            run_id = store.start_run(f"live-{i}", DOMAINS[i % len(DOMAINS)], MODELS[i % len(MODELS)])
            for kind in ("generate", "answer", "code"):
                store.append_event(run_id, kind, {"iteration": 1, "model": MODELS[i % len(MODELS)], "seconds": 5.0,
                                                  "completion_tokens": 200, "code": "x = 1"})
    return time.perf_counter() - started


def deep_cursor(db: DashboardDb, depth: int) -> str:
    row = db.rows("SELECT ts, run_id FROM runs ORDER BY ts DESC, run_id DESC LIMIT 1 OFFSET ?", (depth,))[0]
    return f"{row['ts']}|{row['run_id']}"


def timed(client: TestClient, url: str, repeat: int) -> dict[str, float]:
    started = time.perf_counter()
    assert client.get(url).status_code == 200, url  # warm-up (and the answer folds' first pass)
    first = (time.perf_counter() - started) * 1000
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, url
    return {"first_ms": round(first, 2), "min_ms": round(min(times), 2), "median_ms": round(statistics.median(times), 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--db", type=Path, help="database to fill (must not exist); default: a temporary one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "learning.db"
        if path.exists():
            parser.error(f"{path} exists: give a new file")
        fill_s = fill(path, args.runs)
        db = DashboardDb.open(path)
        try:
            cursor = deep_cursor(db, int(args.runs * 0.9))
            urls = {
                "first page": "/runs",
                "deep page": "/runs?" + urlencode({"before": cursor}),
                "filtered": "/runs?" + urlencode({"domain": "CUDA/Kernel", "outcome": "failed"}),
                "search": "/runs?q=task-4242",
                "overview": "/",
                "metrics": "/metrics",
                **{page: f"/{page}" for page in ("models", "domains", "queue", "profiling", "improvement", "alerts",
                                                  "stats")},
            }
            with TestClient(create_app(db, clock=lambda: T0 + timedelta(seconds=args.runs * 90 + 60))) as client:
                figures = {name: timed(client, url, args.repeat) for name, url in urls.items()}
        finally:
            db.close()
    result = {"runs": args.runs, "repeat": args.repeat, "fill_s": round(fill_s, 1), "pages": figures}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"{args.runs:,} runs (filled in {fill_s:.1f} s); {args.repeat} requests each, after a warm-up")
        for name, f in figures.items():
            print(f"  {name:<11} first {f['first_ms']:9.2f} ms   min {f['min_ms']:8.2f} ms   "
                  f"median {f['median_ms']:8.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
