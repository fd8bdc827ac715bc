"""Alerts: each kind read from what the stores recorded, on a fake clock (they go away as time or the data
moves on), the page newest first and escaped, and the count the nav loads."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from kisystem.improve.health import HealthMonitor
from kisystem.schedule.store import Outcome, ScheduleStore
from kisystem.web import alerts
from kisystem.web.db import DashboardDb
from kisystem.web.filters import when
from tests.web.support import client
from tests.web.support_improve import SCAN_ERROR, Improved


@pytest.fixture
def dash(improved: Improved) -> Iterator[DashboardDb]:
    db = DashboardDb.open(improved.path)
    try:
        yield db
    finally:
        db.close()


def _history(s: Improved, agent: str) -> list:
    db = s.seeded.db
    return list(reversed(HealthMonitor(db.store, db.config, db.inventory, db.feedback).history(agent)))  # oldest first


def test_health_drops_and_scores_below_the_floor(improved: Improved, dash: DashboardDb) -> None:
    before, after = _history(improved, "big")
    (small,) = _history(improved, "small")
    assert before.score - after.score >= alerts.HEALTH_DROP_POINTS and after.score >= alerts.HEALTH_FLOOR
    assert small.score < alerts.HEALTH_FLOOR
    found = {a.subject: a for a in alerts.health_drops(dash, improved.now)}
    assert set(found) == {"big", "small"}
    assert found["big"].severity == "warning" and found["big"].ts == after.ts.isoformat(timespec="microseconds")
    assert found["big"].message == (f"7-day health of big fell from {before.score:.1f} to {after.score:.1f} "
                                    f"({before.score - after.score:.1f} points)")
    assert found["small"].severity == "critical"
    assert found["small"].message == f"7-day health of small is {small.score:.1f}, below the floor of 50"
    drop = before.score - after.score
    assert [a.subject for a in alerts.health_drops(dash, improved.now, drop_points=drop + 0.1)] == ["small"]
    assert alerts.health_drops(dash, improved.now, floor=small.score) == [found["big"]]
    later = improved.now + timedelta(days=alerts.ALERT_DAYS + 1)  # the drop is old news; the low score is not
    assert [a.subject for a in alerts.health_drops(dash, later)] == ["small"]


def test_a_failure_pattern_is_new_for_a_day(improved: Improved, dash: DashboardDb) -> None:
    (pattern,) = improved.seeded.db.feedback.patterns()
    (alert,) = alerts.new_failure_patterns(dash, improved.now)
    assert (alert.kind, alert.severity, alert.subject) == ("new_failure_pattern", "warning", "small on Python/General")
    assert alert.message == f"{pattern.description} (confidence 1.00)"
    assert alert.ts == pattern.first_ts.isoformat(timespec="microseconds")
    assert alerts.new_failure_patterns(dash, pattern.first_ts + timedelta(days=1, seconds=1)) == []


def test_a_failing_job_until_its_next_run_succeeds(improved: Improved, dash: DashboardDb) -> None:
    (alert,) = alerts.failing_jobs(dash, improved.now)
    assert (alert.subject, alert.severity) == ("security_scan", "critical")
    assert alert.message == f"security_scan failed 3 times in a row: {SCAN_ERROR}"
    store = ScheduleStore(improved.seeded.db.store.guarded)
    assert alert.ts == store.history(task="security_scan")[0].finished.isoformat(timespec="microseconds")
    assert alerts.failing_jobs(dash, improved.now + timedelta(days=alerts.ALERT_DAYS + 1)) == []
    claim = store.claim("security_scan", "holder", 60.0, manual=True, gone=lambda h: None)
    store.finish(claim, Outcome("success", {"scanned": 1}), None)
    assert alerts.failing_jobs(dash, improved.now) == []


def test_an_unreachable_backend_is_one_alert_per_endpoint(improved: Improved, dash: DashboardDb) -> None:
    (alert,) = alerts.unreachable_backends(dash, improved.now)
    assert (alert.kind, alert.severity) == ("backend_unreachable", "critical")
    assert alert.subject == "local (http://127.0.0.1:9)"
    # the run that ended, the model skipped (not the one skipped for a missing model), the two models profiled
    assert "(run ended 1x, model skipped 1x, health profiling 2x)" in alert.message
    assert alert.message.startswith("did not answer in the last 24 h")
    assert alerts.unreachable_backends(dash, improved.now + timedelta(days=2)) == []


def test_the_alerts_page_lists_every_kind_newest_first(improved: Improved, dash: DashboardDb) -> None:
    every = alerts.all_alerts(dash, improved.now)
    assert [a.ts for a in every] == sorted((a.ts for a in every), reverse=True)
    assert {a.kind for a in every} == set(alerts.KINDS)
    with client(improved.path, clock=lambda: improved.now) as c:
        page = c.get("/alerts").text
        count = c.get("/alerts/count").text
    rows = re.findall(r'<tr data-kind="([a-z_]+)"><td>(.*?)</td>', page)
    assert rows == [(a.kind, when(a.ts)) for a in every]
    kinds = {r[0]: r[1] for r in re.findall(r"<tr><td>([a-z_]+)</td><td class=\"n\">(\d+)</td>", page)}
    assert kinds == {kind: str(sum(a.kind == kind for a in every)) for kind in alerts.KINDS}
    assert f'data-testid="alert-count">{len(every)}<' in page
    assert re.sub(r"<[^>]+>", "", count) == str(len(every))
    assert SCAN_ERROR not in page and html.escape(SCAN_ERROR, quote=False) in page
    assert '<a href="/alerts" aria-current="page">Alerts' in page and 'hx-get="/alerts/count"' in page


def test_alerts_on_an_empty_and_on_the_oldest_schema(tmp_path: Path) -> None:
    from kisystem.store import LearningStore, db
    from kisystem.store.migrations import migrate

    LearningStore.open(tmp_path / "empty.db").close()
    conn = db.connect(tmp_path / "v1.db")
    migrate(conn, target=1)
    conn.close()
    for name in ("empty.db", "v1.db"):
        with client(tmp_path / name) as c:
            page = c.get("/alerts")
            assert page.status_code == 200 and "No alert:" in page.text, name
            assert c.get("/alerts/count").text == "", name
