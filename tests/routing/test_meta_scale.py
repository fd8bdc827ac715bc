"""`bench meta-scale` on a small database: the code path, not the 1M-run timing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from kisystem.bench.meta_scale import build_db, measure, run_meta_scale, synthetic_runs
from kisystem.models.inventory import load_inventory
from kisystem.routing import MetaSupervisor
from kisystem.store.learning import LearningStore

NOW = datetime(2026, 2, 1, tzinfo=UTC)


def test_synthetic_runs_are_plausible_and_repeatable() -> None:
    chains = {d: r.chain for d, r in load_inventory("ollama").routes.items()}
    runs = list(synthetic_runs(500, NOW, seed=3))
    assert runs == list(synthetic_runs(500, NOW, seed=3))
    assert len({r.run_id for r in runs}) == 500
    for r in runs:
        assert r.outcome != "running" and r.ts <= NOW and r.models_tried[-1] == r.model
        chain = chains[r.domain]
        assert list(r.models_tried) == list(chain[chain.index(r.models_tried[0]):][: len(r.models_tried)])


def test_aggregates_and_full_scan_agree_and_bias_fires(tmp_path: Path) -> None:
    path = tmp_path / "scale.db"
    assert build_db(path, 2000, NOW) > 0
    fast_ms, scan_ms, agree = measure(path, NOW, repeats=3)
    assert agree and fast_ms > 0 and scan_ms > 0
    with LearningStore.open(path) as store:
        assert MetaSupervisor(store, clock=lambda: NOW).recommend_model_bias()  # the bias path is exercised


def test_run_meta_scale_in_a_temporary_database() -> None:
    result = run_meta_scale(200, repeats=2)
    assert (result.runs, result.agree) == (200, True)
    assert result.ratio > 0 and result.build_s > 0
