"""MetaSupervisor: the guide's worked examples through the public API, on a real store."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kisystem.config import MetaSupervisorWeights, OptimizationConfig
from kisystem.routing import MetaSupervisor, PriorityInputs, UnknownDomain, explain, priority, recency_boost
from kisystem.store.learning import LearningStore, RunResult

NOW = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
CUDA, DSP = "CUDA/Kernel", "Audio/DSP"
QWEN, R1, CODER = "qwen2.5-coder:32b", "deepseek-r1:32b", "deepseek-coder-v2:16b"


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> Iterator[LearningStore]:
    with LearningStore.open(tmp_path / "learning.db", clock=clock) as s:
        yield s


def add_run(store: LearningStore, clock: Clock, domain: str, model: str, outcome: str, age_days: float,
            wall_s: float = 60.0, tried: tuple[str, ...] = ()) -> None:  # fmt: skip
    clock.now = NOW - timedelta(days=age_days)
    run_id = store.start_run("task", domain, (tried or (model,))[0])
    store.finish_run(run_id, RunResult(model, 1, None, outcome, models_tried=tried or (model,), wall_s=wall_s))
    clock.now = NOW


def seed_bias_table(store: LearningStore, clock: Clock) -> None:
    """The guide's table: qwen 15/14 at a mean age of 5 d, r1 8/7 at 10 d, coder 3/2 at 2 d."""
    for age in (1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9):
        add_run(store, clock, CUDA, QWEN, "success", age)
    add_run(store, clock, CUDA, QWEN, "failed", 5)
    for age in (7, 8, 9, 10, 11, 12, 13):
        add_run(store, clock, CUDA, R1, "success", age)
    add_run(store, clock, CUDA, R1, "exhausted", 10)
    for age in (1, 2):
        add_run(store, clock, CUDA, CODER, "success", age)
    add_run(store, clock, CUDA, CODER, "failed", 3)


# -- priority -------------------------------------------------------------------------


def test_guide_priority_examples_from_stated_inputs() -> None:
    assert priority(0.85, 120, 12, 0.05) == pytest.approx(0.20165, abs=5e-6)
    assert priority(0.94, 80, 25, -0.1) == pytest.approx(0.22247, abs=5e-6)
    meta = MetaSupervisor(None, OptimizationConfig())
    assert meta.priority(0.94, 80, 25, -0.1) > meta.priority(0.85, 120, 12, 0.05)


def test_guide_explain_dict_for_cuda() -> None:
    got = explain(PriorityInputs(CUDA, success_rate=0.85, avg_time=120, run_count=12, recency=0.05))
    assert set(got) == {"priority_score", "factors", "success_rate", "avg_time", "run_count"}
    assert got["priority_score"] == pytest.approx(0.20165, abs=5e-6)
    assert got["factors"] == pytest.approx({
        "failure_contribution": 0.075, "time_contribution": 0.2 / 121,
        "count_contribution": 0.12, "recency_boost": 0.005,
    })  # fmt: skip
    assert round(got["factors"]["time_contribution"], 5) == 0.00165
    assert (got["success_rate"], got["avg_time"], got["run_count"]) == (0.85, 120, 12)


def test_weights_come_from_config() -> None:
    weights = MetaSupervisorWeights(failure_weight=1.0, time_weight=0.0, count_weight=0.0, recency_weight=0.0)
    meta = MetaSupervisor(None, replace(OptimizationConfig(), meta_supervisor_weights=weights))
    assert meta.priority(0.85, 120, 12, 0.1) == pytest.approx(0.15)


def test_recency_boost_windows() -> None:
    day = timedelta(days=1)
    assert recency_boost(NOW - 2 * day, NOW - day / 2, NOW) == 0.1  # an error beats a success
    assert recency_boost(NOW - 4 * day, NOW - day / 2, NOW) == -0.1
    assert recency_boost(NOW - 4 * day, NOW - 2 * day, NOW) == 0.0
    assert recency_boost(None, None, NOW) == 0.0


def test_audio_dsp_example_from_a_real_history(store: LearningStore, clock: Clock) -> None:
    """sr 47/50 = 0.94, t 80 s, c >= 20 (same count term as 25), success yesterday, last error 5 d ago."""
    for i in range(47):
        add_run(store, clock, DSP, CODER, "success", 0.5 + i / 10, wall_s=80.0)
    for age in (5, 6, 7):
        add_run(store, clock, DSP, CODER, "failed", age, wall_s=80.0)
    # CUDA: 17/20 = 0.85, t 120 s, an error two days ago -> R = +0.1
    for i in range(17):
        add_run(store, clock, CUDA, QWEN, "success", 4 + i / 10, wall_s=120.0)
    for age in (2, 3, 5):
        add_run(store, clock, CUDA, QWEN, "failed", age, wall_s=120.0)
    meta = MetaSupervisor(store, OptimizationConfig(), clock)
    top = meta.next_priorities()
    assert [d for d, _ in top] == [CUDA, DSP]
    assert dict(top)[DSP] == pytest.approx(0.22247, abs=5e-6)
    assert dict(top)[CUDA] == pytest.approx(0.075 + 0.2 / 121 + 0.2 + 0.01)
    assert meta.explain_priority(DSP)["factors"]["recency_boost"] == pytest.approx(-0.01)
    assert meta.explain_priority(CUDA)["run_count"] == 20
    assert meta.next_priorities(top_n=1) == top[:1]


# -- model bias -----------------------------------------------------------------------


def test_guide_bias_table(store: LearningStore, clock: Clock) -> None:
    seed_bias_table(store, clock)
    meta = MetaSupervisor(store, OptimizationConfig(), clock)
    assert round(meta.confidence(CUDA, QWEN), 2) == 0.79
    assert round(meta.confidence(CUDA, R1), 2) == 0.63
    assert round(meta.confidence(CUDA, CODER), 2) == 0.63
    assert meta.recommend_model_bias() == {CUDA: QWEN}
    assert meta.confidence(CUDA, "never-ran") == 0.0


def test_bias_needs_five_runs_and_ages_out(store: LearningStore, clock: Clock) -> None:
    for age in range(4):
        add_run(store, clock, DSP, CODER, "success", age)
    meta = MetaSupervisor(store, OptimizationConfig(), clock)
    assert meta.recommend_model_bias() == {}
    add_run(store, clock, DSP, CODER, "success", 0)
    assert meta.recommend_model_bias() == {DSP: CODER}
    clock.now = NOW + timedelta(days=15)  # w = exp(-0.5) < 0.65: the evidence is too old
    assert meta.recommend_model_bias() == {}


def test_escalated_runs_count_against_the_models_that_failed(store: LearningStore, clock: Clock) -> None:
    for age in range(6):
        add_run(store, clock, CUDA, R1, "success", age, tried=(QWEN, R1))
    meta = MetaSupervisor(store, OptimizationConfig(), clock)
    assert meta.recommend_model_bias() == {CUDA: R1}
    assert meta.confidence(CUDA, QWEN) == 0.0


def test_full_scan_gives_the_same_answers(store: LearningStore, clock: Clock) -> None:
    seed_bias_table(store, clock)
    add_run(store, clock, DSP, CODER, "failed", 1)
    fast = MetaSupervisor(store, OptimizationConfig(), clock)
    slow = MetaSupervisor(store, OptimizationConfig(), clock, full_scan=True)
    assert slow.recommend_model_bias() == fast.recommend_model_bias()
    assert [d for d, _ in slow.next_priorities()] == [d for d, _ in fast.next_priorities()]
    assert [s for _, s in slow.next_priorities()] == pytest.approx([s for _, s in fast.next_priorities()])
    assert slow.confidence(CUDA, QWEN) == pytest.approx(fast.confidence(CUDA, QWEN))


# -- switches and edges ---------------------------------------------------------------


def test_disabled_meta_supervisor_answers_nothing(store: LearningStore, clock: Clock) -> None:
    seed_bias_table(store, clock)
    meta = MetaSupervisor(store, replace(OptimizationConfig(), enable_meta_supervisor=False), clock)
    assert (meta.next_priorities(), meta.recommend_model_bias()) == ([], {})
    assert meta.explain_priority(CUDA)["run_count"] == 26  # diagnostics still read the data


def test_no_store_and_empty_store(store: LearningStore) -> None:
    for meta in (MetaSupervisor(None), MetaSupervisor(store)):
        assert (meta.next_priorities(), meta.recommend_model_bias(), meta.known_domains()) == ([], {}, [])
        assert meta.get_statistics()["bias_hit_rate"] is None


def test_unknown_domain_lists_the_known_ones(store: LearningStore, clock: Clock) -> None:
    add_run(store, clock, CUDA, QWEN, "success", 1)
    with pytest.raises(UnknownDomain, match=r"'Nope'.*known domains: CUDA/Kernel") as err:
        MetaSupervisor(store, clock=clock).explain_priority("Nope")
    assert err.value.exit_code == 2


def test_meta_supervisor_never_writes(store: LearningStore, clock: Clock) -> None:
    seed_bias_table(store, clock)
    before = store.path.read_bytes(), store.path.with_name(store.path.name + "-wal").stat().st_size
    meta = MetaSupervisor(store, clock=clock)
    meta.next_priorities(), meta.recommend_model_bias(), meta.explain_priority(CUDA), meta.get_statistics()
    assert (store.path.read_bytes(), store.path.with_name(store.path.name + "-wal").stat().st_size) == before


# -- statistics -----------------------------------------------------------------------


def test_statistics_replay_bias_hit_rate(store: LearningStore, clock: Clock) -> None:
    for age in (30, 29, 28, 27, 26):  # evidence: coder solves DSP tasks
        add_run(store, clock, DSP, CODER, "success", age)
    for age, outcome in ((20, "success"), (19, "success"), (18, "failed")):  # followed the bias
        add_run(store, clock, DSP, CODER, outcome, age)
    add_run(store, clock, DSP, QWEN, "success", 17)  # ignored it
    stats = MetaSupervisor(store, clock=clock).get_statistics()
    assert stats["enabled"] is True and stats["runs"] == 9
    assert stats["bias"]["followed"] == 3 and stats["bias"]["hits"] == 2
    assert stats["bias_hit_rate"] == pytest.approx(2 / 3)
    assert (stats["bias"]["ignored"], stats["bias"]["ignored_success_rate"]) == (1, 1.0)
    assert stats["bias"]["unbiased"] == 5


def test_statistics_priority_error_definition(store: LearningStore, clock: Clock) -> None:
    add_run(store, clock, DSP, CODER, "success", 10, wall_s=9.0)
    add_run(store, clock, DSP, CODER, "failed", 5, wall_s=19.0)
    stats = MetaSupervisor(store, clock=clock).get_statistics()
    # second run: predicted sr 1, t 9 s; actual sr 0, t 19 s (c and R cancel out)
    expected = abs(0.5 * (1 - 0) + 0.2 / 20 - (0.5 * (1 - 1) + 0.2 / 10))
    assert stats["priority_error_runs"] == 1
    assert stats["avg_priority_error"] == pytest.approx(expected)
    assert math.isclose(expected, 0.49)
