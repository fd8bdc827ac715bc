"""get_efficiency: wait, throughput, the replayed ETA error and the recorded order against FIFO, on queues
moved through their states at chosen times (figures worked out by hand)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from kisystem.stats import Window, get_efficiency
from kisystem.stats.efficiency import ROI_NOT_RECORDED, task_logs
from tests.stats.support import CPP, DOCS, PY, T0, Db, guide_queue


@pytest.fixture
def db(tmp_path: Path):
    db = Db(tmp_path / "learning.db")
    yield db
    db.close()


def test_wait_and_throughput(db: Db) -> None:
    guide_queue(db)
    q = get_efficiency(db.store, Window(T0 + timedelta(hours=2)))
    assert (q.tasks, q.never_leased, q.finished) == (4, 1, 3)
    assert q.waits_s == (190.0, 10.0, 490.0)  # by task id: A, B, C were queued at 0 and first leased at 190, 10, 490
    assert q.avg_wait_s == pytest.approx(230.0)
    assert q.window_h == pytest.approx(2.0)  # from the first queued task to now
    assert q.throughput_per_h == pytest.approx(1.5)
    assert q.busy_h == pytest.approx(1380 / 3600)  # first lease at 10 s, last result at 1390 s
    assert q.busy_throughput_per_h == pytest.approx(3 / (1380 / 3600))


def test_the_recorded_order_against_fifo_weighted_by_priority(db: Db) -> None:
    guide_queue(db)
    fifo = get_efficiency(db.store, Window(T0 + timedelta(hours=2))).fifo
    assert fifo is not None and (fifo.tasks, fifo.workers, fifo.weighted) == (3, 1, True)
    # recorded B, A, C: done at 180, 480, 1380; FIFO A, B, C: done at 300, 480, 1380
    assert fifo.flow_recorded == pytest.approx(80 * 180 + 90 * 480 + 95 * 1380)  # 188,700
    assert fifo.flow_fifo == pytest.approx(90 * 300 + 80 * 480 + 95 * 1380)  # 196,500
    assert fifo.gain == pytest.approx(196_500 / 188_700 - 1)  # +4.1 %


def test_without_priorities_the_comparison_is_of_plain_flow_times_on_the_workers_seen(db: Db) -> None:
    x, y, z = db.add("X", domain=PY), db.add("Y", domain=CPP), db.add("Z", domain=DOCS)
    db.claim(z, "w1")  # t = 0, held 100 s
    db.clock.at(1)
    db.claim(x, "w2")  # held 50 s, beside z: two workers
    db.clock.at(51)
    db.finish(x, holder="w2")
    db.claim(y, "w2")
    db.clock.at(71)
    db.finish(y, holder="w2")
    db.clock.at(100)
    db.finish(z, holder="w1")
    fifo = get_efficiency(db.store, Window(db.clock())).fifo
    assert fifo is not None and (fifo.workers, fifo.weighted) == (2, False)
    assert "unweighted" in fifo.basis
    # recorded Z, X, Y: Z 0-100, X 0-50, Y 50-70 -> 220; FIFO X, Y, Z: X 0-50, Y 0-20, Z 20-120 -> 190
    assert (fifo.flow_recorded, fifo.flow_fifo) == pytest.approx((220.0, 190.0))
    assert fifo.gain == pytest.approx(190 / 220 - 1)


def test_a_retried_task_is_held_for_the_sum_of_its_attempts(db: Db) -> None:
    t = db.add("T", 10.0)
    db.claim(t)
    db.clock.at(30)
    assert db.queue.release(t, "w1", "worker died") == "queued"
    db.clock.at(40)
    db.claim(t)
    db.clock.at(100)
    db.finish(t)
    (log,) = task_logs(db.store)
    assert log.held_s == pytest.approx(30 + 60)
    assert log.first_lease == T0


def test_roi_accuracy_is_not_recorded_and_the_replay_uses_only_runs_ended_before_the_claim(db: Db) -> None:
    # history of (mistral:7b, C++/System): static ETA 30 * 1.0 + 30 = 60 s
    db.imported("h1", CPP, "mistral:7b", "success", T0 - timedelta(hours=3), 100.0)
    db.imported("h2", CPP, "mistral:7b", "failed", T0 - timedelta(hours=2), 140.0)
    db.imported("late", CPP, "mistral:7b", "success", T0 + timedelta(seconds=5), 1000.0)  # ends after the claim
    first, second = db.add("first", 50.0, CPP), db.add("second", 50.0, DOCS)
    db.clock.at(10)
    db.claim(first)
    db.attach(first, "run-first")
    db.imported("run-first", CPP, "mistral:7b", "success", T0 + timedelta(seconds=10), 105.0)
    db.clock.at(115)
    db.finish(first)
    db.claim(second)  # (smollm2-135m, Tests/Docs): no history, static 5 * 0.8 + 30 = 34 s
    db.attach(second, "run-second")
    db.imported("run-second", DOCS, "smollm2-135m", "success", T0 + timedelta(seconds=115), 68.0)
    db.clock.at(183)
    db.finish(second)
    roi = get_efficiency(db.store, Window(db.clock())).roi
    # first: ETA (2 * 120 + 3 * 60) / 5 = 84 s against 105 s; second: 34 s against 68 s
    assert roi.tasks == 2
    assert roi.mean_abs_error == pytest.approx((21 / 105 + 34 / 68) / 2)  # 0.6
    assert roi.mean_ratio == pytest.approx((105 / 84 + 68 / 34) / 2)  # 1.625
    assert roi.actual_mean_s == pytest.approx((105 + 68) / 2)
    data = roi.to_dict()
    assert data["recorded"] is False and data["note"] == ROI_NOT_RECORDED


def test_the_window_counts_tasks_queued_and_finished_in_it(db: Db) -> None:
    guide_queue(db)
    later = T0 + timedelta(days=3)
    db.clock.now = later
    e = db.add("E", 60.0, PY)
    db.clock.now = later + timedelta(seconds=20)
    db.claim(e)
    db.clock.now = later + timedelta(seconds=80)
    db.finish(e)
    q = get_efficiency(db.store, Window(later + timedelta(hours=1), days=1))
    assert (q.tasks, q.waits_s, q.finished, q.never_leased) == (1, (20.0,), 1, 0)
    assert q.window_h == 24.0
    assert q.throughput_per_h == pytest.approx(1 / 24)
    assert q.fifo is None  # one finished task in the window: nothing to compare


def test_an_empty_queue_has_no_figures_and_says_what_each_needs(db: Db) -> None:
    q = get_efficiency(db.store, Window(db.clock(), days=7))
    assert (q.avg_wait_s, q.throughput_per_h, q.busy_throughput_per_h, q.fifo) == (None, None, None, None)
    data = q.to_dict()
    assert data["avg_wait_no_data"] == "no data yet (needs queued tasks that were leased)"
    assert data["throughput_no_data"] == "no data yet (needs tasks run through the queue (kisystem queue run))"
    assert data["vs_fifo"] == {"gain": None, "no_data": "no data yet (needs at least 2 finished queued tasks)"}
    assert data["roi_accuracy"]["no_data"] == "no data yet (needs finished queued tasks whose run has a wall time)"
