"""get_escalation_stats: escalations, stop-loss triggers, recovery and model effectiveness per domain,
checked against figures worked out by hand from the runs below."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from kisystem.stats import Window, get_escalation_stats
from tests.stats.support import CPP, PY, Db, Step, fill


@pytest.fixture
def db(tmp_path: Path):
    db = Db(tmp_path / "learning.db")
    yield db
    db.close()


def test_escalations_stop_loss_and_recovery_per_domain(db: Db) -> None:
    fill(db)
    stats = get_escalation_stats(db.store, Window(db.clock()))
    cpp, py = stats.domains  # by name
    assert (py.domain, py.runs, py.logged_runs) == (PY, 4, 4)
    assert py.escalations == 3  # R1, R2 (after a skip), R3
    assert py.stoploss_triggers == 3  # R1's and R3's escalations, R3 exhausted; R2's skip is no trigger
    assert (py.escalated_runs, py.recovered, py.recovery_rate) == (2, 1, 0.5)
    assert (cpp.domain, cpp.runs, cpp.logged_runs) == (CPP, 2, 1)
    assert (cpp.escalations, cpp.stoploss_triggers, cpp.escalated_runs, cpp.recovered) == (0, 1, 0, 0)
    assert cpp.recovery_rate is None  # nothing escalated: no rate, not 0
    assert (stats.total("escalations"), stats.total("stoploss_triggers")) == (3, 4)
    assert stats.recovery_rate == 0.5


def test_model_effectiveness_counts_scored_attempts_generation_seconds_and_solved_runs(db: Db) -> None:
    fill(db)
    cpp, py = get_escalation_stats(db.store, Window(db.clock())).domains
    small, big = sorted(py.models, key=lambda m: m.model, reverse=True)
    # small: R1 2 + R3 2 + R4 1 attempts (R2's skip is none), 10+12+8+9+5 s, solved R4
    assert (small.model, small.attempts, small.model_s, small.solved) == ("small", 5, 44.0, 1)
    assert small.solved_per_attempt == pytest.approx(1 / 5)
    assert small.solved_per_model_s == pytest.approx(1 / 44)
    # big: R1 1 + R2 1 + R3 2 attempts, 30+20+25+35 s, solved R1 and R2
    assert (big.model, big.attempts, big.model_s, big.solved) == ("big", 4, 110.0, 2)
    assert big.solved_per_attempt == pytest.approx(0.5)
    assert big.solved_per_model_s == pytest.approx(2 / 110)
    (cpp_big,) = cpp.models  # the imported success has no events: not counted as solved by an attempt
    assert (cpp_big.attempts, cpp_big.model_s, cpp_big.solved, cpp_big.solved_per_attempt) == (2, 90.0, 0, 0.0)


def test_the_window_leaves_out_runs_started_before_it(db: Db) -> None:
    db.run([Step("small"), Step("small", escalate_to="big"), Step("big", "ok")], "success")
    db.clock.now += timedelta(days=3)
    db.run([Step("small", "ok")], "success")
    (py,) = get_escalation_stats(db.store, Window(db.clock(), days=2)).domains
    assert (py.runs, py.escalations, py.stoploss_triggers, py.escalated_runs) == (1, 0, 0, 0)
    (everything,) = get_escalation_stats(db.store, Window(db.clock())).domains
    assert (everything.runs, everything.escalations, everything.recovered) == (2, 1, 1)


def test_an_empty_database_has_no_domains_and_says_what_it_needs(db: Db) -> None:
    stats = get_escalation_stats(db.store, Window(db.clock()))
    assert stats.domains == ()
    assert stats.recovery_rate is None
    data = stats.to_dict()
    assert data["no_data"] == "no data yet (needs finished runs in the learning database)"
    assert data["totals"]["recovery_rate"] is None
