"""Configuration versions in the learning database: one active at most, rollback, and the overlay applied."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from kisystem.config import OptimizationConfig
from kisystem.improve.overlay import ModelTuning, Overlay, OverlayError
from kisystem.improve.versions import SHIPPED, OptimizationStore, PlanRefused, UnknownVersion, apply_active
from kisystem.models.inventory import Route
from kisystem.store.learning import LearningStore
from kisystem.store.migrations import current_version, migrate
from tests.improve.optimize_support import CPP, PY, fleet

CONFIG = OptimizationConfig()
START_BIG = Overlay(routes={PY: Route(PY, "big", ("small",))})
TUNED = Overlay(models={"small": ModelTuning(stoploss=1, timeout_s=30.0)},
                settings={"stoploss_per_model": 3, "hybrid_decision_weights": {"meta_bias": 0.3, "failure_state": 0.4}})


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "learning.db"


@pytest.fixture
def store(db: Path) -> Iterator[OptimizationStore]:
    with OptimizationStore.open(db) as opened:
        yield opened


def test_migration_8_adds_the_tables_to_the_learning_database(db: Path) -> None:
    with LearningStore.open(db) as learning:
        assert learning.schema_version() >= 8
    conn = sqlite3.connect(db)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"config_versions", "config_activations", "optimization_plans", "optimization_results", "runs"} <= tables


def test_migration_8_applies_over_a_version_7_database(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    assert migrate(conn, target=7) == 7
    assert migrate(conn) >= 8 and current_version(conn) >= 8
    conn.close()
    with OptimizationStore.open(db) as store:
        assert store.versions() == [] and store.active() is None


def test_no_version_is_active_at_first_and_the_shipped_configuration_applies(store) -> None:
    assert store.active() is None
    assert apply_active(CONFIG, fleet(), store) == (CONFIG, fleet())
    assert apply_active(CONFIG, fleet(), None) == (CONFIG, fleet())


def test_a_new_version_is_stored_inactive_with_parent_time_and_reason(store) -> None:
    version = store.add_version(START_BIG, None, "try big first")
    assert (version.id, version.parent, version.reason, version.state, version.active) == (
        1, None, "try big first", "candidate", False)
    assert version.created.tzinfo is not None and version.overlay == START_BIG
    assert store.active() is None


def test_versions_and_rollback_round_trip(db: Path, store) -> None:
    one = store.activate(store.add_version(START_BIG, None, "one").id)
    two = store.activate(store.add_version(TUNED, one.id, "two").id)
    assert [(v.id, v.active) for v in store.versions()] == [(1, False), (2, True)]
    assert store.rollback(one.id).id == one.id
    assert apply_active(CONFIG, fleet(), store)[1].route(PY).start == "big"
    assert store.rollback(SHIPPED) is None
    assert apply_active(CONFIG, fleet(), store) == (CONFIG, fleet())
    assert store.rollback(two.id).id == two.id
    store.close()
    with OptimizationStore.open(db) as reopened:  # it is in the database, not in the object
        assert reopened.active().id == two.id
        assert [v.state for v in reopened.versions()] == ["kept", "kept"]


def test_rollback_refuses_unknown_and_never_kept_versions(store) -> None:
    candidate = store.add_version(START_BIG, None, "not validated")
    with pytest.raises(PlanRefused, match="never kept"):
        store.rollback(candidate.id)
    with pytest.raises(UnknownVersion, match="no configuration version 7"):
        store.rollback(7)
    assert store.active() is None


def test_the_database_allows_one_active_version_only(db: Path, store) -> None:
    store.activate(store.add_version(START_BIG, None, "a").id)
    store.add_version(TUNED, 1, "b")
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("UPDATE config_versions SET active = 1 WHERE id = 2")


def test_the_overlay_sets_routes_model_tuning_and_the_allowed_settings() -> None:
    config, inventory = TUNED.with_route(Route(CPP, "huge", ())).apply(CONFIG, fleet())
    assert inventory.route(CPP).chain == ("huge",) and inventory.route(PY).chain == ("small", "big")
    assert (inventory.models["small"].stoploss, inventory.models["small"].timeout_s) == (1, 30.0)
    assert inventory.models["big"] == fleet().models["big"]
    assert config.stoploss_per_model == 3
    assert (config.hybrid_decision_weights.meta_bias, config.hybrid_decision_weights.failure_state) == (0.3, 0.4)
    assert config.hybrid_decision_weights.complexity == CONFIG.hybrid_decision_weights.complexity
    assert Overlay.from_json(TUNED.to_json()) == TUNED


def test_the_overlay_sets_a_models_answer_budget_and_context_and_the_meta_weights() -> None:
    overlay = Overlay(models={"small": ModelTuning(max_tokens=640, context_tokens=4096)},
                      settings={"meta_supervisor_weights": {"failure_weight": 0.4, "recency_weight": 0.2}})
    config, inventory = overlay.apply(CONFIG, fleet())
    small = inventory.models["small"]
    assert (small.max_tokens, small.context_tokens) == (640, 4096)
    assert (small.stoploss, small.timeout_s) == (fleet().models["small"].stoploss, fleet().models["small"].timeout_s)
    assert (config.meta_supervisor_weights.failure_weight, config.meta_supervisor_weights.recency_weight) == (0.4, 0.2)
    assert overlay.to_json()["models"] == {"small": {"max_tokens": 640, "context_tokens": 4096}}
    assert Overlay.from_json(overlay.to_json()) == overlay


def test_an_overlay_stored_before_max_tokens_and_context_tokens_still_loads(store) -> None:
    older = {"routes": {}, "models": {"small": {"stoploss": 1, "timeout_s": 30.0}}, "config": {}}
    overlay = Overlay.from_json(older)
    assert overlay.models["small"] == ModelTuning(stoploss=1, timeout_s=30.0)
    assert overlay.models["small"].max_tokens is None and overlay.models["small"].context_tokens is None
    version = store.activate(store.add_version(overlay, None, "old").id)
    assert store.version(version.id).overlay.to_json()["models"] == older["models"]
    assert apply_active(CONFIG, fleet(), store)[1].models["small"].max_tokens is None


@pytest.mark.parametrize("overlay, problem", [
    (Overlay(routes={PY: Route(PY, "ghost", ("big",))}), "names ghost, not in the inventory"),
    (Overlay(routes={"Rust/Web": Route("Rust/Web", "big", ())}), "no route for"),
    (Overlay(models={"ghost": ModelTuning(stoploss=1)}), "tunes model 'ghost'"),
    (Overlay(models={"small": ModelTuning(stoploss=9)}), "stoploss 9"),
    (Overlay(settings={"target_score": 10}), "only stoploss_per_model"),
    (Overlay(settings={"hybrid_decision_weights": {"meta_bias": 0.9}}), "must sum to 1"),
    (Overlay(settings={"meta_supervisor_weights": {"failure_weight": 0.9}}), "must sum to 1"),
    (Overlay(models={"small": ModelTuning(max_tokens=0)}), "max_tokens 0 is not an integer 16..32768"),
    (Overlay(models={"small": ModelTuning(max_tokens=640.0)}), "max_tokens 640.0 is not an integer"),
    (Overlay(models={"small": ModelTuning(context_tokens=True)}), "context_tokens True is not an integer"),
    (Overlay(models={"small": ModelTuning(context_tokens=1 << 30)}), "context_tokens 1073741824 is not an integer"),
])
def test_an_overlay_that_does_not_fit_is_ignored_with_a_warning(store, overlay: Overlay, problem: str) -> None:
    with pytest.raises(OverlayError, match=problem):
        overlay.apply(CONFIG, fleet())
    store.activate(store.add_version(overlay, None, "stale").id)
    warnings: list[str] = []
    assert apply_active(CONFIG, fleet(), store, warnings.append) == (CONFIG, fleet())
    [warning] = warnings
    assert warning.startswith("configuration version 1 ignored:") and problem in warning
