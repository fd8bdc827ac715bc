"""PriorityEff = PriorityScore / ETA; ETAs learned from the learning database; the loaded-model tie rule."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from kisystem.config import OptimizationConfig
from kisystem.queue.ordering import (
    NEUTRAL_PRIORITY,
    EtaEstimator,
    Ordering,
    PriorityScores,
    learned_ordering,
    start_models,
    static_eta,
)
from kisystem.store.learning import LearningStore, ModelStats, RunRecord, utc_now
from kisystem.store.queue import Candidate
from tests.queue.support import INVENTORY


def cand(i: int, domain: str = "C++/System", model: str | None = None, priority: float | None = None) -> Candidate:
    return Candidate(i, domain, model, priority, 1)


def test_static_table_is_the_guides() -> None:
    assert static_eta("deepseek-r1:32b", "CUDA/Kernel") == 900 * 1.5 + 30
    assert static_eta("mistral:7b", "Tests/Docs") == 30 * 0.8 + 30
    assert static_eta("unknown", "Python/General") == 180 + 30


def test_learned_eta_moves_from_the_table_toward_the_measured_mean() -> None:
    eta = EtaEstimator([ModelStats("C++/System", "mistral:7b", 3, 2, 120.0),
                        ModelStats("C++/System", "phi4", 1000, 900, 10.0)])  # fmt: skip
    prior = static_eta("mistral:7b", "C++/System")
    assert eta.estimate("mistral:7b", "C++/System").seconds == pytest.approx((3 * 120 + 3 * prior) / 6)
    assert eta("phi4", "C++/System") == pytest.approx((1000 * 10 + 3 * 210) / 1003)  # evidence dominates
    assert eta.estimate("mistral:7b", "Audio/DSP").source == "static"


def test_the_guides_example_runs_b_then_a_then_c() -> None:
    etas = {"qwen2.5-coder:32b": 300.0, "deepseek-coder-v2:16b": 180.0, "deepseek-r1:32b": 900.0}
    ordering = Ordering(eta=lambda model, domain: etas[model])
    tasks = [cand(0, "Audio/DSP", "qwen2.5-coder:32b", 90), cand(1, "C++/System", "deepseek-coder-v2:16b", 80),
             cand(2, "CUDA/Kernel", "deepseek-r1:32b", 95)]
    assert [ordering.eff(c) for c in tasks] == pytest.approx([0.30, 80 / 180, 95 / 900])
    assert [c.id for c in ordering.ranked(tasks)] == [1, 0, 2]


def test_within_ten_percent_a_loaded_model_wins() -> None:
    etas = {"fast": 100.0, "loaded": 105.0, "slow": 120.0}
    ordering = Ordering(eta=lambda model, domain: etas[model], loaded=lambda: {"loaded", "slow"})
    best, near, far = (cand(i, model=m, priority=50) for i, m in enumerate(("fast", "loaded", "slow"), 1))
    assert ordering.pick([best, near, far]) == near  # 0.476 is within 10 % of 0.5
    assert ordering.pick([best, far]) == best  # 0.417 is not
    assert Ordering(eta=lambda m, d: etas[m]).pick([best, near]) == best


def test_equal_priority_eff_goes_to_the_oldest_task() -> None:
    assert Ordering().pick([cand(5), cand(3), cand(4)]).id == 3


def test_priority_score_explicit_then_domain_then_neutral() -> None:
    scores = PriorityScores({"C++/System": 20.0})
    assert scores.score("C++/System", 70.0) == 70.0
    assert scores.score("C++/System") == 20.0
    assert scores.score("Audio/DSP") == NEUTRAL_PRIORITY


def test_start_models_follow_the_route_and_a_bias_within_the_chain() -> None:
    model_for = start_models(INVENTORY, {"Python/General": "medium", "Tests/Docs": "elsewhere"})
    assert model_for("Python/General") == "medium"
    assert model_for("Tests/Docs") == "large"
    assert model_for("Unknown/Domain") == ""


def test_queue_order_drains_groups_by_priority_eff() -> None:
    ordering = Ordering()
    queued = [cand(1), cand(2, priority=90.0), cand(3), cand(4, priority=90.0)]
    assert [c.id for c in ordering.queue_order(queued)] == [2, 4, 1, 3]


def _run(i: int, domain: str, model: str, wall: float, outcome: str = "success") -> RunRecord:
    ts = utc_now() - timedelta(days=5)
    return RunRecord(f"r{i}", "t", domain, model, 1, 90.0, outcome, None, None, 0.0, 0.0, 0.0, ts,
                     ts + timedelta(seconds=wall), 0, 0, None, (model,), wall, None)  # fmt: skip


def test_learned_ordering_reads_etas_and_priorities_from_the_learning_db(tmp_path: Path) -> None:
    with LearningStore.open(tmp_path / "l.db") as store:
        store.import_runs([_run(i, "Python/General", "small", 20.0) for i in range(30)]
                          + [_run(100 + i, "Tests/Docs", "large", 600.0, "failed") for i in range(30)])
        ordering = learned_ordering(store, OptimizationConfig(), INVENTORY)
    fast, slow = cand(1, "Python/General"), cand(2, "Tests/Docs")
    assert ordering.model(fast) == "small" and ordering.model(slow) == "large"
    assert ordering.eta("small", "Python/General") == pytest.approx((30 * 20 + 3 * 210) / 33)
    assert ordering.priority(slow) > ordering.priority(fast)  # it fails: it needs attention
    assert ordering.pick([fast, slow]) == fast  # but it is 30x slower


async def test_loaded_models_come_from_ollama_ps_and_embedded_servers(httpserver) -> None:
    from kisystem.models.client import ModelClient
    from kisystem.models.inventory import parse_inventory
    from kisystem.queue.ordering import probe_loaded

    url = httpserver.url_for("").rstrip("/")
    httpserver.expect_request("/api/ps").respond_with_json({"models": [{"name": "phi4:latest"}]})
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "tiny"}]})
    inventory = parse_inventory({
        "endpoints": {"ollama": {"backend": "ollama", "base_url": url},
                      "embedded": {"backend": "openai", "base_url": url},
                      "remote": {"backend": "openai", "base_url": url},
                      "down": {"backend": "ollama", "base_url": "http://127.0.0.1:9", "retries": 0}},
        "models": [{"name": "phi4", "rank": 1, "timeout_s": 5, "endpoint": "ollama"},
                   {"name": "mistral:7b", "rank": 2, "timeout_s": 5, "endpoint": "ollama"},
                   {"name": "tiny", "rank": 3, "timeout_s": 5, "endpoint": "embedded", "embedded": "smollm2-135m"},
                   {"name": "big", "rank": 4, "timeout_s": 5, "endpoint": "remote"},
                   {"name": "gone", "rank": 5, "timeout_s": 5, "endpoint": "down"}],
        "routes": {},
    }, "probe test")  # fmt: skip
    async with ModelClient(inventory) as client:
        assert await probe_loaded(inventory, client) == {"phi4", "tiny"}
