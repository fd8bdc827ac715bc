"""The Domains page: the meta-supervisor's priorities with their four terms, model bias, the learning curve."""

from __future__ import annotations

from dataclasses import replace

from kisystem.config import MetaSupervisorWeights, OptimizationConfig
from kisystem.routing.meta import (
    RECENT_ERROR,
    RECENT_SUCCESS,
    MetaSupervisor,
    priority_factors,
)
from kisystem.store.learning import LearningStore
from kisystem.web import domains
from kisystem.web.db import DashboardDb
from kisystem.web.pages_models import configure
from tests.schedule.jobs.support import CPP, PY
from tests.web.support import NOW, Seeded, client
from tests.web.support_models import (
    CURVE,
    DSP,
    HOSTILE_DOMAIN,
    HOSTILE_MODEL,
    assert_escaped,
    bias_runs,
    chart,
    hostile,
    outcomes,
    table,
)


def _wall(s: Seeded, key: str) -> float:
    return s.db.store.get_run(s.ids[key]).wall_s


def _cells(f, p: float) -> list[str]:
    return [f"{p:.4f}", *(f"{v:+.4f}" for v in (f.failure_contribution, f.time_contribution, f.count_contribution,
                                                 f.recency_boost))]  # fmt: skip


def test_priorities_show_the_four_terms_highest_first(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        page = c.get("/domains").text
    rows = table(page, "priorities")
    # C++: its one run failed 20 minutes before NOW (an error in the last 3 days: R = +0.1); Python: both
    # finished runs solved, the newest within the last day (R = -0.1); avg time over its timed runs.
    cpp = priority_factors(0.0, _wall(seeded, "failed"), 1, RECENT_ERROR)
    py_time = (_wall(seeded, "old") + _wall(seeded, "solved")) / 2
    py = priority_factors(1.0, py_time, 2, RECENT_SUCCESS)
    assert [r[1] for r in rows] == [CPP, PY] and cpp.total > py.total
    assert rows[0][2:7] == _cells(cpp, cpp.total) and rows[1][2:7] == _cells(py, py.total)
    assert rows[0][7:] == ["0%", "30.0 s", "1", "+0.1"] and rows[1][7:9] == ["100%", f"{py_time:.1f} s"]
    assert rows[1][9:] == ["2", "-0.1"]
    with LearningStore.open(seeded.path) as store:  # what `kisystem meta explain` prints, for the same moment
        explained = MetaSupervisor(store, clock=lambda: NOW).explain_priority(CPP)
    assert f"{explained['priority_score']:.4f}" == rows[0][2]


def test_the_configured_weights_rank_and_a_disabled_supervisor_is_said(seeded: Seeded) -> None:
    weights = MetaSupervisorWeights(failure_weight=0.1, time_weight=0.7, count_weight=0.1, recency_weight=0.1)
    config = replace(OptimizationConfig(), meta_supervisor_weights=weights, enable_meta_supervisor=False)
    with client(seeded.path) as c:
        configure(c.app, config=config)
        page = c.get("/domains").text
    (cpp,) = [r for r in table(page, "priorities") if r[1] == CPP]
    f = priority_factors(0.0, _wall(seeded, "failed"), 1, RECENT_ERROR, weights)
    assert cpp[2:7] == _cells(f, f.total)
    assert "P = 0.1·(1 − success rate) + 0.7/(1 + avg seconds)" in page
    assert "The meta-supervisor is disabled" in page


def test_model_bias_marks_the_model_the_gate_picks(seeded: Seeded) -> None:
    bias_runs(seeded, solved=5)
    with client(seeded.path, clock=seeded.db.clock) as c:
        rows = table(c.get("/domains").text, "bias")
    by_pair = {(r[0], r[1]): r[2:] for r in rows}
    small = by_pair[(DSP, "small")]
    assert small[:2] == ["5", "5"] and float(small[2]) >= 0.65 and small[3] == "recommended"
    assert by_pair[(DSP, "big")][:3] == ["1", "0", "0.00"]
    assert by_pair[(DSP, "big")][3] == "not yet: 4 more runs, weighted success 0.00 < 0.65"
    assert by_pair[(PY, "big")][:2] == ["2", "2"] and by_pair[(PY, "big")][3] == "not yet: 3 more runs"
    assert [r[1] for r in rows if r[0] == DSP] == ["small", "big"]  # best first


def test_learning_curve_is_a_rolling_success_rate_per_run_number(seeded: Seeded) -> None:
    outcomes(seeded, CURVE, "f" * 10 + "s" * 15)  # 25 runs: ten failures, then fifteen successes
    with client(seeded.path, clock=seeded.db.clock) as c:
        data = chart(c.get("/domains").text, "learning-curve-data")
    curve = data["lines"][CURVE]
    assert data["time"] is False and len(curve) == 25
    assert curve[10.0] == 0.0 and curve[11.0] == 10.0 and curve[15.0] == 50.0 and curve[20.0] == 100.0
    assert data["lines"][PY] == {1.0: 100.0, 2.0: 100.0} and data["lines"][CPP] == {1.0: 0.0}


def _curve(s: Seeded, domain: str, **options: int) -> dict[float, float]:
    dash = DashboardDb.open(s.path)
    try:
        total = dash.value("SELECT COUNT(*) FROM runs WHERE domain = ? AND outcome != 'running'", (domain,))
        data = domains.learning_curve(dash, {domain: total}, **options)
    finally:
        dash.close()
    (values,) = [s["values"] for s in data["series"]]
    return {x: y for x, y in zip(data["x"], values, strict=True) if y is not None}


def test_learning_curve_is_thinned_to_its_point_budget(seeded: Seeded) -> None:
    outcomes(seeded, CURVE, "fs" * 12 + "s")  # 25 runs
    # step ceil(25 / 5) = 5: runs 1, 6, 11, 16, 21 and the last; windows of 4: f,s alternate (50 %), run 1 alone
    assert _curve(seeded, CURVE, window=4, points=5) == {1.0: 0.0, 6.0: 50.0, 11.0: 50.0, 16.0: 50.0, 21.0: 50.0,
                                                         25.0: 75.0}  # fmt: skip


def test_learning_curve_reads_only_the_newest_runs_with_whole_windows(seeded: Seeded) -> None:
    outcomes(seeded, CURVE, "f" * 20 + "s" * 10)  # 30 runs
    # the newest 12 (and the 3 before them, for windows of 4): runs 19..30 with whole windows from run 19
    curve = _curve(seeded, CURVE, window=4, runs=12, points=100)
    assert list(curve) == [float(n) for n in range(19, 31)]
    assert [curve[float(n)] for n in range(19, 25)] == [0.0, 0.0, 25.0, 50.0, 75.0, 100.0] and curve[30.0] == 100.0
    assert list(_curve(seeded, CURVE, window=4, runs=12, points=4)) == [19.0, 22.0, 25.0, 28.0, 30.0]  # step 3


def test_domain_and_model_names_are_escaped(seeded: Seeded) -> None:
    hostile(seeded)
    with client(seeded.path, clock=seeded.db.clock) as c:
        page = c.get("/domains").text
    assert_escaped(page, HOSTILE_DOMAIN, HOSTILE_MODEL)
    assert HOSTILE_DOMAIN in [r[1] for r in table(page, "priorities")]
    assert (HOSTILE_DOMAIN, HOSTILE_MODEL) in {(r[0], r[1]) for r in table(page, "bias")}
    assert chart(page, "learning-curve-data")["lines"][HOSTILE_DOMAIN] == {1.0: 0.0, 2.0: 50.0}


def test_domains_page_on_an_empty_and_on_the_oldest_schema(tmp_path, seeded: Seeded) -> None:
    from kisystem.store import db
    from kisystem.store.migrations import migrate

    LearningStore.open(tmp_path / "empty.db").close()
    conn = db.connect(tmp_path / "v1.db")
    migrate(conn, target=1)  # no aggregates: the supervisor's full-scan reads
    conn.execute("INSERT INTO runs (run_id, task, domain, model, outcome, ts, wall_s) VALUES"
                 " ('r1', 't', 'Old/Domain', 'm', 'success', '2025-06-02T11:00:00.000000+00:00', 5.0)")
    conn.close()
    with client(tmp_path / "empty.db") as c:
        empty = c.get("/domains")
    with client(tmp_path / "v1.db") as c:
        old = c.get("/domains")
    assert empty.status_code == 200 and "No domain has a finished run yet." in empty.text
    assert "No finished run yet." in empty.text
    assert old.status_code == 200
    expected = priority_factors(1.0, 5.0, 1, RECENT_SUCCESS).total  # a success an hour and a half before NOW
    assert [r[1:3] for r in table(old.text, "priorities")] == [["Old/Domain", f"{expected:.4f}"]]
    assert [r[:3] for r in table(old.text, "bias")] == [["Old/Domain", "m", "1"]]


def test_the_nav_links_the_page(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        page = c.get("/domains").text
    assert '<a href="/domains" aria-current="page">Domains</a>' in page
