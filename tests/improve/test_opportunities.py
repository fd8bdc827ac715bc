"""The ten opportunity types: each trigger fires on constructed data, and not below its threshold."""

from __future__ import annotations

from pathlib import Path

import pytest

from kisystem.improve.opportunities import ResourceSample, describe, find, gather
from kisystem.improve.plans import OPPORTUNITY_TYPES, Opportunity, Severity
from tests.improve.health_support import CPP, PY, SMALL, Db, fleet


@pytest.fixture
def db(tmp_path: Path):
    d = Db(tmp_path / "learning.db")
    yield d
    d.close()


def found(db: Db, kind: str, **gathered) -> list[Opportunity]:
    opportunities = find(gather(db.monitor, **gathered), db.config, fleet())
    for o in opportunities:
        assert describe(o)  # every one can be said in a line
    return [o for o in opportunities if o.type == kind]


def runs(db: Db, n: int, outcome: str = "success", model: str = SMALL, **kw) -> None:
    for _ in range(n):
        db.run(model, outcome, iterations=((5.0, outcome != "success"),), **kw)


def test_success_rate_decline_over_five_points_week_over_week(db: Db) -> None:
    runs(db, 4)  # last week: 4 of 4
    db.clock.advance(days=7)
    runs(db, 3)
    runs(db, 1, "failed")  # this week: 3 of 4, 25 points down
    [o] = found(db, "success_rate_decline")
    assert (o.severity, o.agent, o.domain) == (Severity.HIGH, SMALL, PY)
    assert (o.evidence["last_week"], o.evidence["this_week"], o.evidence["drop_points"]) == (1.0, 0.75, 25.0)


def test_no_decline_below_five_points_or_without_enough_runs(tmp_path: Path) -> None:
    db = Db(tmp_path / "a.db")
    runs(db, 20)
    db.clock.advance(days=7)
    runs(db, 19)
    runs(db, 1, "failed")  # 100 % -> 95 %: exactly 5 points, not more
    assert found(db, "success_rate_decline") == []
    db = Db(tmp_path / "b.db")
    runs(db, 2)
    db.clock.advance(days=7)
    runs(db, 2, "failed")  # 2 runs a week: under min_samples (3)
    assert found(db, "success_rate_decline") == []


def test_performance_degradation_over_the_sla(db: Db) -> None:
    for gen_s in (29.0, 29.0, 29.0):
        db.run(SMALL, iterations=((gen_s, False),))
    assert found(db, "performance_degradation") == []  # 29 s: within small's 30 s SLA
    for gen_s in (50.0, 50.0, 50.0):
        db.run(SMALL, iterations=((gen_s, False),))
    [o] = found(db, "performance_degradation")  # mean 39.5 s
    assert (o.severity, o.agent, o.domain, o.evidence["sla_s"]) == (Severity.MEDIUM, SMALL, PY, 30.0)
    assert o.evidence["mean_generation_s"] == pytest.approx(39.5, abs=0.01)


def test_quality_issues_under_the_quality_bar(db: Db) -> None:
    for score in (0.8, 0.8, 0.8):
        db.quality(SMALL, score, source="user")
    assert found(db, "quality_issues") == []  # 0.8 is not below 0.8
    db.quality(SMALL, 0.5, source="user")
    [o] = found(db, "quality_issues")
    assert (o.severity, o.agent, o.domain, o.evidence["mean_quality"]) == (Severity.HIGH, SMALL, PY, 0.725)


def test_tool_upgrade_from_the_names_a_backend_offers(db: Db) -> None:
    assert found(db, "tool_upgrade", offered={"local": [SMALL, "big"]}) == []  # nothing new
    got = found(db, "tool_upgrade", offered={"local": [SMALL, "big", "small:7b", "phi4:latest"]})
    assert [(o.severity, o.agent, o.evidence["offered"], o.evidence["kind"]) for o in got] == [
        (Severity.LOW, None, "phi4:latest", "new_model"), (Severity.LOW, SMALL, "small:7b", "other_tag")]


def test_resource_inefficiency_only_on_measurements_over_the_limits(db: Db) -> None:
    assert found(db, "resource_inefficiency") == []  # nothing measured yet
    samples = (ResourceSample("test", "test phase peak", "test", memory_mb=500.0, cpu_percent=80.0),
               ResourceSample(SMALL, "server beyond weights and context", "server", memory_mb=900.0, domain=PY))
    [o] = found(db, "resource_inefficiency", resources=samples)
    assert (o.severity, o.agent, o.evidence["memory_mb"]) == (Severity.MEDIUM, SMALL, 900.0)


def measured_run(db: Db, phases: list[dict], server: dict | None = None, domain: str = PY) -> None:
    run_id = db.store.start_run("t", domain, SMALL)
    for i, data in enumerate(phases, 1):
        db.store.append_event(run_id, "test", {"iteration": i, "model": SMALL, "ok": True, **data})
    if server is not None:
        db.store.append_event(run_id, "server_memory", server)
    db.clock.advance(seconds=1)


def test_resource_inefficiency_from_measured_phases(db: Db) -> None:
    measured_run(db, [{"peak_mb": 120.0, "cpu_percent": 95.0}, {"peak_mb": 480.0, "cpu_percent": 90.0}])
    assert found(db, "resource_inefficiency") == []  # peak under 500 MB; CPU over 2 phases, 3 needed
    measured_run(db, [{"peak_mb": 730.5, "cpu_percent": 85.0}], domain=CPP)
    measured_run(db, [{"peak_mb": 20.0, "cpu_percent": 92.0}])
    found_now = found(db, "resource_inefficiency")
    by_domain = {o.domain: o for o in found_now}
    assert set(by_domain) == {PY, CPP}
    assert (by_domain[CPP].agent, by_domain[CPP].evidence["memory_mb"]) == ("test", 730.5)
    assert "cpu_percent" not in by_domain[CPP].evidence  # one C++ phase: too few for a mean
    assert by_domain[PY].evidence["cpu_percent"] == pytest.approx((95 + 90 + 92) / 3, abs=0.1)
    assert "memory_mb" not in by_domain[PY].evidence


def test_resource_inefficiency_from_a_server_beyond_its_models(db: Db) -> None:
    server = {"pid": 7, "models": [SMALL, "big"], "peak_mb": 2800.0, "rss_mb": 2700.0, "weights_mb": 1600.0,
              "kv_mb": 250.0, "beyond_mb": 950.0}
    measured_run(db, [], server={**server, "beyond_mb": 300.0})
    assert found(db, "resource_inefficiency") == []
    measured_run(db, [], server=server)
    [o] = found(db, "resource_inefficiency")
    assert (o.agent, o.domain, o.evidence["memory_mb"], o.evidence["part"]) == ("server", None, 950.0, "server")
    assert "KV 250 MB" in describe(o)


def test_error_pattern_from_a_detected_failure_pattern(db: Db) -> None:
    for i in range(2):
        db.feedback.record_failure(SMALL, f"r{i}:1", {"rule": "py.name_error"}, "RUNTIME", source="test",
                                   context={"domain": PY})
    assert found(db, "error_pattern") == []  # 2 times: under the pattern frequency 3
    db.feedback.record_failure(SMALL, "r2:1", {"rule": "py.name_error"}, "RUNTIME", source="test",
                               context={"domain": PY})
    [o] = found(db, "error_pattern")
    assert (o.severity, o.agent, o.domain, o.evidence["frequency"]) == (Severity.HIGH, SMALL, PY, 3)
    assert "RUNTIME `name error`" in o.evidence["pattern"] and o.evidence["pattern_id"] is not None


def test_capability_gap_when_the_whole_chain_fails(db: Db) -> None:
    runs(db, 3, "exhausted", model="big", tried=(SMALL, "big"))
    runs(db, 4)
    assert found(db, "capability_gap") == []  # 3 of 7 exhausted: under half
    runs(db, 1, "exhausted", model="big", tried=(SMALL, "big"))
    [o] = found(db, "capability_gap")
    assert (o.severity, o.agent, o.domain) == (Severity.MEDIUM, "big", PY)
    assert (o.evidence["exhausted"], o.evidence["runs"], o.evidence["models_tried"]) == (4, 8, ["big", SMALL])


def test_training_needed_until_a_model_passes_the_evidence_gate(db: Db) -> None:
    assert found(db, "training_needed") == []  # no runs: no domain the user works in
    runs(db, 4)
    runs(db, 1, model="big", domain=CPP)
    got = {o.domain: o for o in found(db, "training_needed")}
    assert set(got) == {PY, CPP} and got[PY].agent == SMALL and got[PY].evidence["runs"] == {SMALL: 4}
    assert got[PY].severity is Severity.LOW
    runs(db, 1)
    assert {o.domain for o in found(db, "training_needed")} == {CPP}  # small has its 5 runs on Python


def test_code_smell_from_static_analysis_findings(db: Db) -> None:
    for score in (1.0, 1.0, 0.9):
        db.quality(SMALL, score)
    db.quality(SMALL, 0.5, source="user")  # not static analysis
    assert found(db, "code_smell") == []  # 1 of 3 reviews with findings
    db.quality(SMALL, 0.95)
    [o] = found(db, "code_smell")
    assert (o.severity, o.evidence["with_findings"], o.evidence["reviews"]) == (Severity.MEDIUM, 2, 4)


def test_security_vulnerability_from_a_guardian_security_finding(db: Db) -> None:
    def security(score: float, findings: list[str]) -> None:
        db.feedback.record_feedback(SMALL, "op", "security", score, {"findings": findings}, "guardian",
                                    {"domain": PY})

    security(1.0, [])
    security(0.9, ["3: B101 assert used"])  # one LOW finding: 0.9
    assert found(db, "security_vulnerability") == []
    security(0.5, ["7: B602 subprocess call with shell=True"])
    [o] = found(db, "security_vulnerability")
    assert (o.severity, o.agent, o.evidence["unsafe"], o.evidence["worst"]) == (Severity.CRITICAL, SMALL, 1, 0.5)
    assert o.evidence["findings"] == ["7: B602 subprocess call with shell=True"]


def test_most_severe_first_and_by_agent(db: Db) -> None:
    runs(db, 1)
    db.feedback.record_feedback(SMALL, "op", "security", 0.0, {}, "guardian", {"domain": PY})
    everything = find(gather(db.monitor), db.config, fleet())
    assert [o.type for o in everything] == ["security_vulnerability", "training_needed"]
    assert find(gather(db.monitor), db.config, fleet(), agent="big") == []
    assert len(OPPORTUNITY_TYPES) == 10
