"""More of the learning database for the Models and Domains pages, on top of :func:`tests.web.support.seed`.

Everything is written through the real stores (runs and their events by ``Db.run``, health by the
real HealthMonitor) on the seed's moved clock; tests read the dashboard on that same clock.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

import markupsafe

from kisystem.improve.health import Health, HealthMonitor
from kisystem.models.base import Endpoint
from kisystem.models.inventory import Inventory, ModelSpec
from kisystem.store.learning import RunResult
from tests.schedule.jobs.support import Iter
from tests.web.support import Seeded

HOSTILE_MODEL = "<script>alert('model')</script>"
HOSTILE_DOMAIN = "<img src=x onerror=alert('domain')>"
DSP = "DSP/Audio"
CURVE = "Docs/Tests"
REFUSING = "http://127.0.0.1:18517"  # nothing listens there (the tests' 185xx range)


def health_after_runs(s: Seeded, model: str, runs: int = 3, *, fail: bool = False) -> list[Health]:
    """``model`` solves (or, with ``fail``, fails) ``runs`` more Python tasks; its health is computed and
    stored after each (the seed stored one already)."""
    monitor = HealthMonitor(s.db.store, s.db.config, s.db.inventory, s.db.feedback, clock=s.db.clock)
    out = []
    for i in range(runs):
        it = Iter(model, error="LOGIC" if fail else None, gen_s=2.0, completion_tokens=80)
        s.db.run(f"{model}-{i}", [it], outcome="failed" if fail else "success")
        out.append(monitor.compute(model))
    return out


def hostile(s: Seeded) -> str:
    """A run whose model and domain names are HTML: a failure, then a success of the same model."""
    s.db.run("h1", [Iter(HOSTILE_MODEL, error="LOGIC", gen_s=3.0)], outcome="failed", domain=HOSTILE_DOMAIN)
    return s.db.run("h2", [Iter(HOSTILE_MODEL, gen_s=3.0)], domain=HOSTILE_DOMAIN)


def bias_runs(s: Seeded, solved: int = 5) -> None:
    """``small`` solves ``solved`` DSP tasks; ``big`` fails one (a model the gate does not pick)."""
    for i in range(solved):
        s.db.run(f"dsp-{i}", [Iter("small")], domain=DSP)
    s.db.run("dsp-big", [Iter("big", error="RUNTIME")], outcome="failed", domain=DSP)


def outcomes(s: Seeded, domain: str, pattern: str) -> None:
    """One finished run per character of ``pattern`` in ``domain``, in order: ``s`` a success, ``f`` a failure."""
    for i, mark in enumerate(pattern):
        run_id = s.db.store.start_run(f"{domain}-{i}", domain, "small")
        s.db.clock.advance(seconds=10)
        outcome = "success" if mark == "s" else "failed"
        s.db.store.finish_run(run_id, RunResult(model="small", iter=1, score_final=100.0 if mark == "s" else 0.0,
                                                outcome=outcome))  # fmt: skip
        s.db.clock.advance(minutes=1)


def fleet(served_url: str, refusing_url: str = REFUSING) -> Inventory:
    """small and big on an OpenAI-compatible endpoint at ``served_url``; far on an Ollama one that refuses."""
    endpoints = {"served": Endpoint("served", "openai", served_url.rstrip("/")),
                 "gone": Endpoint("gone", "ollama", refusing_url)}  # fmt: skip
    models = {"small": ModelSpec("small", 1, "", 60.0, "served"), "big": ModelSpec("big", 2, "", 120.0, "served"),
              "far": ModelSpec("far", 3, "", 60.0, "gone")}  # fmt: skip
    return Inventory("test fleet", endpoints, models, {})



def table(page: str, css_class: str) -> list[list[str]]:
    """The cell texts (tags stripped, entities decoded) of each body row of ``<table class=css_class>``."""
    found = re.search(rf'<table class="{css_class}">(.*?)</table>', page, re.DOTALL)
    assert found, f"no table {css_class}"
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", found.group(1), re.DOTALL)
    return [[html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.DOTALL)]
            for r in rows if "<td" in r]


def chart(page: str, block_id: str) -> dict[str, Any]:
    """A chart's JSON data block, with its lines as {label: {x: y}} (gaps left out) under ``lines``."""
    found = re.search(rf'<script type="application/json" id="{block_id}">(.*?)</script>', page, re.DOTALL)
    assert found, f"no chart data {block_id}"
    data = json.loads(found.group(1))
    data["lines"] = {s["label"]: {x: y for x, y in zip(data["x"], s["values"], strict=True) if y is not None}
                     for s in data["series"]}
    return data


def assert_escaped(page: str, *texts: str) -> None:
    """Each text shows only escaped, and the page runs no script but our own files and JSON blocks."""
    for text in texts:
        assert text not in page and str(markupsafe.escape(text)) in page, text
    tags = re.findall(r"<script[^>]*>", page)
    allowed = r'<script (src="/static/[\w.]+" defer|type="application/json" id="[\w-]+")>'
    assert tags and all(re.fullmatch(allowed, t) for t in tags), tags
