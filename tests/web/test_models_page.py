"""The Models page: per model and per (model, domain) numbers, health and its trend, the loaded state on
each backend (probed off the request path), its charts, and the escaping of model names."""

from __future__ import annotations

import socket
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from pytest_httpserver import HTTPServer

from kisystem.improve.health import HealthMonitor
from kisystem.models.base import Endpoint
from kisystem.models.loaded import served_names
from kisystem.store.learning import LearningStore
from kisystem.web.backends import (
    LOADED,
    NOT_LOADED,
    UNKNOWN,
    UNREACHABLE,
    BackendProbe,
    probe_endpoint,
)
from kisystem.web.db import DashboardDb
from kisystem.web.filters import score, secs
from kisystem.web.models import HEALTH_SHOWN, success_chart
from kisystem.web.pages_models import configure
from tests.schedule.jobs.support import T0, Iter
from tests.web.support import NOW, Seeded, client
from tests.web.support_models import (
    HOSTILE_DOMAIN,
    HOSTILE_MODEL,
    REFUSING,
    assert_escaped,
    chart,
    fleet,
    health_after_runs,
    hostile,
    table,
)

SILENT_PORTS = range(18518, 18530)  # for a socket that accepts and never answers (18517 stays closed)


def _answers(s: Seeded) -> dict[tuple[str, str], list[float]]:
    """[answers, seconds, completion tokens] per (model, domain), read back through the store's events."""
    out: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for run in s.db.store.recent_runs(limit=1000):
        for e in s.db.store.events(run.run_id):
            if e.kind == "answer":
                acc = out[(e.payload["model"], run.domain)]
                acc[0] += 1
                acc[1] += e.payload["seconds"]
                acc[2] += e.payload["completion_tokens"]
    return out


def _expected(acc: list[float]) -> list[str]:
    return [secs(acc[1] / acc[0]), f"{acc[2] / acc[1]:.1f}"]


def test_models_and_pairs_show_runs_success_latency_and_tokens_per_second(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        page = c.get("/models").text
    answers = _answers(seeded)
    big = [sum(a[i] for (m, _), a in answers.items() if m == "big") for i in range(3)]
    # big tried old, solved (after the escalation) and failed, solving two; small tried solved only, and
    # lost it to big; the running run counts for nobody yet.
    models = {r[0]: r for r in table(page, "models")}
    assert set(models) == {"big", "small"}
    assert models["big"][1:6] == ["unknown", "3", "67%", *_expected(big)]
    assert models["small"][1:6] == ["unknown", "1", "0%", *_expected(answers[("small", "Python/General")])]
    pairs = {(r[0], r[1]): r[2:] for r in table(page, "model-domains")}
    assert pairs == {
        ("big", "C++/System"): ["1", "0%", *_expected(answers[("big", "C++/System")])],
        ("big", "Python/General"): ["2", "100%", *_expected(answers[("big", "Python/General")])],
        ("small", "Python/General"): ["1", "0%", *_expected(answers[("small", "Python/General")])],
    }
    assert "No model inventory given" in page


def test_health_score_last_scores_and_trend(seeded: Seeded) -> None:
    health_after_runs(seeded, "small", runs=HEALTH_SHOWN)
    health_after_runs(seeded, "big", runs=2, fail=True)
    monitor = HealthMonitor(seeded.db.store, seeded.db.config, seeded.db.inventory, seeded.db.feedback)
    with client(seeded.path, clock=seeded.db.clock) as c:
        page = c.get("/models").text
    models = {r[0]: r for r in table(page, "models")}
    for model, arrow in (("small", "↑ up"), ("big", "↓ down")):
        history = monitor.history(model)  # newest first
        assert models[model][6:] == [score(history[0].score), arrow,
                                     " → ".join(score(h.score) for h in reversed(history[:HEALTH_SHOWN]))]
    assert len(monitor.history("small")) == HEALTH_SHOWN + 1  # one more than shown: the oldest is left out
    assert monitor.history("small")[0].trend == "improving" and monitor.history("big")[0].trend == "declining"
    lines = chart(page, "model-health-chart-data")["lines"]
    assert sorted(lines["small"].values()) == sorted(round(h.score, 2) for h in monitor.history("small"))
    assert len(lines["big"]) == 3 and chart(page, "model-health-chart-data")["y_max"] == 100


def test_success_chart_is_per_model_and_day(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        data = chart(c.get("/models").text, "model-success-chart-data")
    today, three_days_back = (d.replace(hour=0).timestamp() for d in (T0, T0 - timedelta(days=3)))
    # by the model a run ended on: big solved old (3 days back), solved add and failed the C++ task today
    assert data["lines"] == {"big": {three_days_back: 100.0, today: 50.0}} and data["time"] is True
    dash = DashboardDb.open(seeded.path)
    try:
        newest = success_chart(dash, NOW, runs=1)  # the failed C++ run only
    finally:
        dash.close()
    assert newest["series"] == [{"label": "big", "values": [0.0]}] and newest["x"] == [today]


def test_new_answers_are_folded_in_at_the_next_load(seeded: Seeded) -> None:
    with client(seeded.path, clock=seeded.db.clock) as c:
        before = {r[0]: r for r in table(c.get("/models").text, "models")}
        seeded.db.run("fast", [Iter("small", gen_s=1.0, completion_tokens=500)])
        after = {r[0]: r for r in table(c.get("/models").text, "models")}
        fold = c.app.state.dashboard.fold
        newest = seeded.db.store.query("SELECT MAX(id) FROM run_events")[0][0]
    assert fold.last_id == newest
    # small: its earlier answer (4 s, 100 tokens) and the new one (1 s, 500 tokens)
    assert before["small"][2:6] == ["1", "0%", "4.0 s", "25.0"]
    assert after["small"][2:6] == ["2", "50%", secs(5.0 / 2), f"{600 / 5.0:.1f}"]


def test_loaded_state_on_each_backend(seeded: Seeded, httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "small"}, {"id": "other"}]})
    with client(seeded.path) as c:
        configure(c.app, inventory=fleet(httpserver.url_for("/")))
        first = {r[0]: r[1] for r in table(c.get("/models").text, "models")}
        again = c.get("/models").text
    assert first == {"small": LOADED, "big": NOT_LOADED, "far": UNREACHABLE}
    assert "No model inventory given" not in again
    assert len(httpserver.log) == 1  # the second load read the kept answer


def test_without_an_inventory_every_model_is_unknown(seeded: Seeded) -> None:
    hostile(seeded)
    with client(seeded.path, clock=seeded.db.clock) as c:
        configure(c.app, inventory=None)
        states = {r[0]: r[1] for r in table(c.get("/models").text, "models")}
    assert states == {"big": UNKNOWN, "small": UNKNOWN, HOSTILE_MODEL: UNKNOWN}


@pytest.fixture
def silent() -> Iterator[str]:
    """A port that accepts connections and never answers (the first free one of SILENT_PORTS)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for port in SILENT_PORTS:
        try:
            sock.bind(("127.0.0.1", port))
            break
        except OSError:
            continue
    else:
        sock.close()
        pytest.skip(f"no free port in {SILENT_PORTS.start}-{SILENT_PORTS.stop - 1}")
    sock.listen(8)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        sock.close()


def test_a_backend_that_hangs_never_slows_the_page(seeded: Seeded, silent: str) -> None:
    probe = BackendProbe(fleet(silent, silent), timeout_s=1.0, wait_s=0.05)
    with client(seeded.path) as c:
        c.app.state.backend_probe = probe
        started = time.monotonic()
        first = {r[0]: r[1] for r in table(c.get("/models").text, "models")}
        elapsed = time.monotonic() - started
        assert first == {"small": UNKNOWN, "big": UNKNOWN, "far": UNKNOWN} and elapsed < 0.8
        deadline = time.monotonic() + 10
        while probe.state("small").state == UNKNOWN and time.monotonic() < deadline:
            time.sleep(0.05)
        later = {r[0]: r[1] for r in table(c.get("/models").text, "models")}
    assert later == {"small": UNREACHABLE, "big": UNREACHABLE, "far": UNREACHABLE}


class _Ticks:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_probe_asks_again_only_after_its_ttl(httpserver: HTTPServer) -> None:
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "small"}]})
    ticks = _Ticks()
    probe = BackendProbe(fleet(httpserver.url_for("/")), ttl_s=15.0, clock=ticks)
    assert probe.state("small").state == LOADED and probe.state("big").state == NOT_LOADED
    httpserver.clear()
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "big"}]})
    ticks.now += 14.0
    assert probe.state("small").state == LOADED and len(httpserver.log) == 0  # kept, not asked
    ticks.now += 2.0
    assert probe.state("small").state == LOADED  # the kept answer, while the refresh runs
    deadline = time.monotonic() + 10
    while probe.state("big").state != LOADED and time.monotonic() < deadline:
        time.sleep(0.02)
    assert probe.state("big").state == LOADED and probe.state("small").state == NOT_LOADED
    assert probe.state("nope").state == UNKNOWN and len(httpserver.log) == 1


def test_probe_endpoint_paths_keys_and_bad_answers(httpserver: HTTPServer) -> None:
    url = httpserver.url_for("/").rstrip("/")
    httpserver.expect_request("/api/ps").respond_with_json({"models": [{"name": "qwen:7b"}, {"model": "llama"}]})
    httpserver.expect_request("/v1/models", headers={"Authorization": "Bearer s3cret"}).respond_with_json(
        {"data": [{"id": "served"}]})
    with httpx.Client(timeout=1.0) as http:
        assert probe_endpoint(http, Endpoint("o", "ollama", url)) == ["qwen:7b", "llama"]
        assert probe_endpoint(http, Endpoint("k", "openai", url, api_key="s3cret")) == ["served"]
        httpserver.clear()
        httpserver.expect_request("/v1/models").respond_with_data("not json")
        assert probe_endpoint(http, Endpoint("j", "openai", url)) is None
        httpserver.clear()
        httpserver.expect_request("/v1/models").respond_with_json({"error": "down"}, status=503)
        assert probe_endpoint(http, Endpoint("e", "openai", url)) is None
        assert probe_endpoint(http, Endpoint("r", "openai", REFUSING)) is None


def test_served_names_reads_both_wire_formats_and_ignores_junk() -> None:
    assert served_names({"data": [{"id": "a"}, "junk", {"x": 1}]}) == ["a"]
    assert served_names({"models": None, "data": None}) == [] and served_names([1, 2]) == []


def test_model_and_domain_names_are_escaped(seeded: Seeded) -> None:
    hostile(seeded)
    with client(seeded.path, clock=seeded.db.clock) as c:
        page = c.get("/models").text
    assert_escaped(page, HOSTILE_MODEL, HOSTILE_DOMAIN)
    pairs = {(r[0], r[1]): r[2:4] for r in table(page, "model-domains")}
    assert pairs[(HOSTILE_MODEL, HOSTILE_DOMAIN)] == ["2", "50%"]
    assert HOSTILE_MODEL in chart(page, "model-success-chart-data")["lines"]  # the JSON holds it as text


def test_models_page_on_an_empty_and_on_the_oldest_schema(tmp_path) -> None:
    from kisystem.store import db
    from kisystem.store.migrations import migrate

    LearningStore.open(tmp_path / "empty.db").close()
    conn = db.connect(tmp_path / "v1.db")
    migrate(conn, target=1)
    conn.close()
    for name in ("empty.db", "v1.db"):
        with client(tmp_path / name) as c:
            got = c.get("/models")
        assert got.status_code == 200, name
        assert "No model has run yet." in got.text and "No health score stored yet" in got.text


def test_the_nav_links_the_page(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        page = c.get("/models").text
    assert '<a href="/models" aria-current="page">Models</a>' in page and '<a href="/domains" >Domains</a>' in page
