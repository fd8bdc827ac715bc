"""`bench queue` figures: checks of their shape and direction (benchmarks, not timed tests)."""

from __future__ import annotations

from pathlib import Path

from kisystem.bench.queue import BEST, guide_example, report_lines, schedule_benchmark, throughput


def test_guide_example_order_and_timeline() -> None:
    g = guide_example()
    assert g.cost_aware == [("B", 180.0), ("A", 480.0), ("C", 1380.0)]
    assert g.fifo == [("A", 300.0), ("B", 480.0), ("C", 1380.0)]
    assert (g.done_by(g.cost_aware, 240.0), g.done_by(g.fifo, 240.0)) == (1, 0)


def test_cost_aware_beats_fifo_and_the_best_order_is_near_the_lower_bound() -> None:
    r = schedule_benchmark(tasks=200, workers=3, seed=1)
    assert r.ratio("cost-aware (learned ETA)", "FIFO") < 0.9
    assert r.weighted[BEST] <= min(r.weighted.values()) + 1e-6
    assert r.lower_bound <= r.weighted[BEST] <= 1.21 * r.lower_bound


def test_throughput_and_report(tmp_path: Path) -> None:
    tp = throughput(20, tmp_path)
    assert tp.tasks == 20 and min(tp.add_per_s, tp.claim_per_s, tp.complete_per_s, tp.cycles_per_s) > 0
    lines = report_lines(guide_example(), schedule_benchmark(30, 2), tp)
    assert any("tasks/s" in line for line in lines)
