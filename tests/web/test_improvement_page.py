"""The Improvement page: what the feedback loop, the optimizer and the scheduler stored, the approve / reject
buttons (CSRF-checked, clear about every refusal), and a database of the oldest schema."""

from __future__ import annotations

import html
import re
from pathlib import Path

from kisystem.improve.versions import OptimizationStore
from kisystem.web.filters import secs, when
from kisystem.web.pages_improve import APPROVAL_OFF, FLASH_COOKIE, configure_approval
from kisystem.web.security import CSRF_COOKIE
from tests.web.support import SCRIPT, client
from tests.web.support_improve import (
    HOSTILE_SUMMARY,
    SCAN_ERROR,
    Improved,
)


def _table(page: str, css_class: str) -> str:
    found = re.search(rf'<table class="{css_class}">(.*?)</table>', page, re.DOTALL)
    assert found, f"no table {css_class}"
    return found.group(1)


def _rows(table: str) -> list[list[str]]:
    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, re.DOTALL)
    return [[" ".join(html.unescape(re.sub(r"<[^>]+>", "", c)).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", r,
             re.DOTALL)] for r in rows if "<td" in r]  # fmt: skip


def _flash(page: str) -> str:
    found = re.search(r'data-testid="flash">(.*?)</p>', page, re.DOTALL)
    assert found, "no message on the page"
    return html.unescape(found.group(1))


def _store(s: Improved) -> OptimizationStore:
    return OptimizationStore.open(s.path, clock=lambda: s.now)


def _approving(c, s: Improved) -> None:
    db = s.seeded.db
    configure_approval(c.app, config=db.config, inventory=db.inventory, home=db.root)


def _token(c) -> str:
    c.get("/improvement")
    token = c.cookies.get(CSRF_COOKIE)
    assert token
    return token


def test_the_page_shows_what_the_stores_hold(improved: Improved) -> None:
    db = improved.seeded.db
    with client(improved.path, clock=lambda: improved.now) as c:
        page = c.get("/improvement").text
    with _store(improved) as store:
        waiting = [store.plan(improved.plans[k]) for k in ("replayable", "unreplayable")]
        kept = store.plan(improved.plans["kept"])
        (result,) = store.results(kept.id)
        active = store.active()
    awaiting = _rows(_table(page, "awaiting"))
    assert [r[0] for r in awaiting] == [str(p.id) for p in waiting]
    assert [r[5] for r in awaiting] == [p.describe() for p in waiting] == ["stop-loss of small: 2",
                                                                           "max_tokens of small: 2048"]
    assert "no replay can judge it" in awaiting[1][6] and "no replay can judge it" not in awaiting[0][6]
    (decided,) = _rows(_table(page, "plans"))
    assert decided[:3] == [str(kept.id), "applied_kept", "LOW"]
    assert decided[5] == f"version {result.version}: {result.detail}"
    assert f"Active: version {active.id}" in page and _rows(_table(page, "versions"))[0][0] == f"{active.id} (active)"
    (pattern,) = db.feedback.patterns()
    assert _rows(_table(page, "patterns")) == [["failure", "small", pattern.description, "5/5", "1.00",
                                                when(pattern.last_ts.isoformat())]]
    (learning,) = db.feedback.learnings()
    assert _rows(_table(page, "learnings"))[0][2] == f"{learning.title}: {learning.description}"
    opportunities = _rows(_table(page, "opportunities"))
    assert [(r[0], r[1], r[4], r[5]) for r in opportunities] == [
        ("HIGH", "quality_issues", HOSTILE_SUMMARY, "improvement_proposals"),
        ("LOW", "training_needed", "C++: too few runs", "improvement_proposals")]
    jobs = {r[0]: r for r in _rows(_table(page, "jobs"))}
    assert jobs["security_scan"][3].startswith("error") and jobs["security_scan"][4:7] == [secs(4.0), "4", "3"]
    assert jobs["health_profiling"][3].startswith("success") and jobs["health_profiling"][4:7] == [secs(7.0), "1", "0"]
    runs = _rows(_table(page, "job-runs"))
    assert [r[1] for r in runs] == ["health_profiling", *["security_scan"] * 4, "improvement_proposals"]
    assert runs[1][2] == "error (manual)" and runs[1][5] == SCAN_ERROR
    assert runs[-1][5] == "patterns=1, opportunities=[2]"


def test_hostile_text_is_escaped(improved: Improved) -> None:
    with client(improved.path, clock=lambda: improved.now) as c:
        page = c.get("/improvement").text
    for text in (SCRIPT, HOSTILE_SUMMARY, SCAN_ERROR):
        assert text not in page
        assert html.escape(text, quote=False) in page


def test_the_nav_links_the_page(improved: Improved) -> None:
    with client(improved.path, clock=lambda: improved.now) as c:
        page = c.get("/improvement").text
    assert '<a href="/improvement" aria-current="page">Improvement</a>' in page


def test_approve_is_off_without_what_serve_loads(improved: Improved) -> None:
    plan = improved.plans["unreplayable"]
    with client(improved.path, clock=lambda: improved.now) as c:
        page = c.get("/improvement").text
        assert f"Approve is unavailable: {APPROVAL_OFF}" in html.unescape(page)
        assert page.count("disabled title=") == 2
        answer = c.post(f"/improvement/plans/{plan}/approve", data={"csrf_token": _token(c)})
    assert answer.status_code == 200 and _flash(answer.text) == f"plan {plan} not approved: {APPROVAL_OFF}"
    with _store(improved) as store:
        assert store.plan(plan).status == "awaiting_approval" and store.active().id == 1


def test_configure_approval_needs_all_three(improved: Improved) -> None:
    db = improved.seeded.db
    with client(improved.path) as c:
        configure_approval(c.app, config=db.config, inventory=db.inventory, home=None)
        assert c.app.state.approval is None
        _approving(c, improved)
        assert c.app.state.approval is not None and "Approve is unavailable" not in c.get("/improvement").text


def test_approving_a_plan_no_replay_can_judge_keeps_it(improved: Improved) -> None:
    plan = improved.plans["unreplayable"]
    with client(improved.path, clock=lambda: improved.now) as c:
        _approving(c, improved)
        token = _token(c)
        answer = c.post(f"/improvement/plans/{plan}/approve", data={"csrf_token": token}, follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"] == "/improvement#plans"
        page = c.get("/improvement").text
        with _store(improved) as store:
            result = store.results(plan)[-1]
            assert store.plan(plan).status == "applied_kept" and store.active().id == result.version == 2
        assert _flash(page) == (f"plan {plan} approved and kept: configuration version 2 is active "
                                f"({result.detail})")
        assert "Active: version 2" in page and [r[0] for r in _rows(_table(page, "awaiting"))] == [
            str(improved.plans["replayable"])]
        assert 'data-testid="flash"' not in c.get("/improvement").text  # shown once
        again = c.post(f"/improvement/plans/{plan}/approve", data={"csrf_token": token})
    assert again.status_code == 200 and _flash(again.text) == f"plan {plan} is applied_kept, not awaiting_approval"


def test_approving_a_plan_replays_the_recorded_runs(improved: Improved) -> None:
    plan = improved.plans["replayable"]
    with client(improved.path, clock=lambda: improved.now) as c:
        _approving(c, improved)
        page = c.post(f"/improvement/plans/{plan}/approve", data={"csrf_token": _token(c)}).text
    with _store(improved) as store:
        status, results = store.plan(plan).status, store.results(plan)
    assert status in ("applied_kept", "rolled_back") and len(results) == 1
    assert results[0].detail.startswith("approved; ") and "replay of" in results[0].detail
    verdict = "approved and kept" if results[0].kept else "approved, then rolled back"
    assert _flash(page).startswith(f"plan {plan} {verdict}") and results[0].detail in _flash(page)


def test_reject_closes_the_plan_and_refusals_are_clear(improved: Improved) -> None:
    plan = improved.plans["replayable"]
    with client(improved.path, clock=lambda: improved.now) as c:
        token = _token(c)
        page = c.post(f"/improvement/plans/{plan}/reject", data={"csrf_token": token}).text
        assert _flash(page) == f"plan {plan} rejected: it will not be applied"
        assert [r[0] for r in _rows(_table(page, "awaiting"))] == [str(improved.plans["unreplayable"])]
        assert _rows(_table(page, "plans"))[0][:2] == [str(plan), "rejected"]
        for url, message in ((f"/improvement/plans/{plan}/reject", f"plan {plan} is rejected, not awaiting_approval"),
                             ("/improvement/plans/99/reject", "no optimization plan 99"),
                             (f"/improvement/plans/{2**70}/reject", f"no optimization plan {2**70}")):
            answer = c.post(url, data={"csrf_token": token})
            assert answer.status_code == 200 and _flash(answer.text) == message, url
        _approving(c, improved)
        for url, message in ((f"/improvement/plans/{plan}/approve", f"plan {plan} is rejected, not awaiting_approval"),
                             ("/improvement/plans/99/approve", "no optimization plan 99")):
            answer = c.post(url, data={"csrf_token": token})
            assert answer.status_code == 200 and _flash(answer.text) == message, url
        assert c.get(f"/improvement/plans/{plan}/approve").status_code == 405
    with _store(improved) as store:
        assert store.plan(plan).status == "rejected" and store.results(plan) == []


def test_a_post_without_the_csrf_token_changes_nothing(improved: Improved) -> None:
    plan = improved.plans["unreplayable"]
    with client(improved.path, clock=lambda: improved.now) as c:
        _approving(c, improved)
        for action in ("approve", "reject"):
            url = f"/improvement/plans/{plan}/{action}"
            assert c.post(url).status_code == 403  # no cookie, no token
            _token(c)
            assert c.post(url).status_code == 403  # the cookie alone
            assert c.post(url, data={"csrf_token": "forged"}).status_code == 403
        assert c.cookies.get(FLASH_COOKIE) is None
    with _store(improved) as store:
        assert [p.status for p in store.plans()] == ["awaiting_approval", "awaiting_approval", "applied_kept"]
        assert len(store.versions()) == 1 and store.active().id == 1


def test_the_page_on_an_empty_and_on_the_oldest_schema(tmp_path: Path) -> None:
    from kisystem.store import LearningStore, db
    from kisystem.store.migrations import migrate

    LearningStore.open(tmp_path / "empty.db").close()
    conn = db.connect(tmp_path / "v1.db")
    migrate(conn, target=1)
    conn.close()
    for name, absent in (("empty.db", False), ("v1.db", True)):
        with client(tmp_path / name) as c:
            page = c.get("/improvement")
            assert page.status_code == 200, name
            text = page.text
            assert ("This database has no optimization plans yet." in text) == absent
            assert ("No plan waits for approval." in text) == (not absent)
            assert ("This database has no scheduled jobs yet." in text) == absent
            assert "Active: version 0 (the shipped configuration)" in text or absent
            answer = c.post("/improvement/plans/1/reject", data={"csrf_token": _token(c)})
            assert _flash(answer.text) == "no optimization plan 1", name
    conn = db.connect(tmp_path / "v1.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1  # the page left the old database as it was
    finally:
        conn.close()
