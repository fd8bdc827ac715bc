"""Routing policies: static, spec (meta bias + hybrid floor), the config switch and choose_start."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from kisystem.config import OptimizationConfig
from kisystem.errors import StoreError
from kisystem.loop.taskspec import PhaseSpec, TaskSpec
from kisystem.models.inventory import load_inventory
from kisystem.routing.policy import SpecPolicy, StaticPolicy, choose_start, make_policy
from kisystem.routing.thompson import ThompsonPolicy
from kisystem.store.learning import LearningStore, RunResult

NOW = datetime(2025, 6, 1, tzinfo=UTC)
CHAIN = ("m1", "m2", "m3", "m4")
PAIR = ("m1", "m2")  # like the embedded routes
# A plain task scores 0.4*meta + 0.3*0.5 + 0.3*0.5; bands <0.4 and <0.6 set no floor, <0.8 the
# middle of the chain, >=0.8 its end: on PAIR bands 0-1 -> m1, bands 2-3 -> m2.
CUDA_FFT = "__global__ void k() { __shared__ float s[64]; __syncthreads(); blockIdx; } k<<<1,1>>>(); cufft"


def task(domain: str = "Python/General", prompt: str = "Return the sum of a list.",
         language: str = "python") -> TaskSpec:
    return TaskSpec(id="t1", domain=domain, language=language, prompt=prompt, solution_file="s.py",
                    test=PhaseSpec("true", 1.0))


@pytest.fixture
def store(tmp_path):
    with LearningStore.open(tmp_path / "learning.db", clock=lambda: NOW) as s:
        yield s


def solved_runs(store: LearningStore, domain: str, model: str, n: int) -> None:
    for _ in range(n):
        run = store.start_run("t", domain, model)
        store.finish_run(run, RunResult(model=model, iter=1, score_final=100, outcome="success",
                                        models_tried=(model,), wall_s=5.0))


def spec_policy(store: LearningStore | None, **overrides) -> SpecPolicy:
    return SpecPolicy(store, replace(OptimizationConfig(), **overrides), clock=lambda: NOW)


def test_static_starts_at_the_route_start() -> None:
    assert StaticPolicy().start_model(task(), CHAIN) == "m1"


def test_spec_without_history_keeps_the_start_for_a_plain_task(store) -> None:
    assert spec_policy(store).start_model(task(), PAIR) == "m1"  # 0.5 -> band 1 -> m1
    assert spec_policy(None).start_model(task(), PAIR) == "m1"


def test_spec_follows_a_strong_meta_bias(store) -> None:
    solved_runs(store, "Python/General", "m2", 6)
    assert spec_policy(store).start_model(task(), PAIR) == "m2"


def test_spec_bias_is_kept_without_a_floor_on_top(store) -> None:
    # its confidence 1.0 would score 0.7 (band 2), but a strong bias is the start model itself
    solved_runs(store, "Python/General", "m1", 6)
    assert spec_policy(store).start_model(task(), PAIR) == "m1"


def test_spec_ignores_weak_evidence(store) -> None:
    solved_runs(store, "Python/General", "m2", 4)  # n < 5: no recommendation
    assert spec_policy(store).start_model(task(), PAIR) == "m1"


def test_spec_ignores_a_bias_outside_the_chain(store) -> None:
    solved_runs(store, "Python/General", "elsewhere", 6)
    assert spec_policy(store).start_model(task(), PAIR) == "m2"  # no start there, but its confidence scores 0.7


def test_spec_ignores_the_bias_when_meta_is_disabled(store) -> None:
    solved_runs(store, "Python/General", "m2", 6)
    assert spec_policy(store, enable_meta_supervisor=False).start_model(task(), PAIR) == "m1"


def test_hybrid_floor_raises_a_complex_task(store) -> None:
    # complexity 1.0, neutral meta 0.5, failure 0.5: 0.65 -> band 2 -> index 2 of 4
    cuda = task("CUDA/Kernel", CUDA_FFT, "cuda")
    assert spec_policy(store).start_model(cuda, CHAIN) == "m3"


def test_hybrid_floor_never_lowers_the_bias(store) -> None:
    solved_runs(store, "CUDA/Kernel", "m4", 6)
    cuda = task("CUDA/Kernel", CUDA_FFT, "cuda")
    assert spec_policy(store).start_model(cuda, CHAIN) == "m4"


def test_make_policy_follows_config(store) -> None:
    inventory = load_inventory("embedded")
    assert OptimizationConfig().routing_policy == "spec"
    assert isinstance(make_policy(OptimizationConfig(), store, inventory), SpecPolicy)
    thompson = make_policy(replace(OptimizationConfig(), routing_policy="thompson"), store, inventory,
                           rng=random.Random(0))
    assert isinstance(thompson, ThompsonPolicy)
    assert thompson.start_model(task(), CHAIN) in CHAIN


class Fixed:
    def __init__(self, model: str | Exception) -> None:
        self.name, self.model = "fixed", model

    def start_model(self, task: TaskSpec, chain) -> str:
        if isinstance(self.model, Exception):
            raise self.model
        return self.model


@pytest.mark.parametrize("policy, expected", [
    (None, None),
    (Fixed("m1"), None),  # the route's own start: no override
    (Fixed("m3"), "m3"),
    (Fixed("stranger"), None),
    (Fixed(StoreError("database is locked")), None),
])
def test_choose_start(policy, expected) -> None:
    assert choose_start(policy, task(), CHAIN) == expected


def test_choose_start_with_an_empty_chain() -> None:
    assert choose_start(Fixed("m1"), task(), ()) is None


def test_choose_start_lets_programming_errors_through() -> None:
    with pytest.raises(ZeroDivisionError):
        choose_start(Fixed(ZeroDivisionError()), task(), CHAIN)
