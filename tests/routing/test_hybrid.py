"""HybridDecision: the guide's worked example, its tables, and the never-lower floor."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kisystem.config import HybridDecisionWeights, OptimizationConfig
from kisystem.loop.categorizer import ErrorType
from kisystem.loop.taskspec import PhaseSpec, TaskSpec
from kisystem.routing import (
    HybridDecision,
    MetaSupervisor,
    apply_floor,
    band,
    combine,
    complexity,
    failure_state,
    floor_index,
    floor_model,
)
from kisystem.store.learning import LearningStore, RunResult

NOW = datetime(2026, 2, 1, tzinfo=UTC)
CUDA, CPP, DSP, DOCS, PY = "CUDA/Kernel", "C++/System", "Audio/DSP", "Tests/Docs", "Python/General"
QWEN = "qwen2.5-coder:32b"
FFT_KERNEL = """
#include <cufft.h>
__global__ void twiddle(float2* x, int n) {
    __shared__ float2 tile[256];
    tile[threadIdx.x] = x[blockIdx.x * 256 + threadIdx.x];
    __syncthreads();
}
void run(float2* x, int n) { twiddle<<<n / 256, 256>>>(x, n); }
"""
GUIDE_CHAIN = ("mistral:7b", "deepseek-coder-v2:16b", "qwen2.5-coder:32b", "deepseek-r1:32b")


# qwen in CUDA: 15 runs, 14 solved, all at the age whose weight makes 14 w / 15 = 0.91
AGE_091 = timedelta(days=-30 * math.log(0.91 * 15 / 14))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LearningStore]:
    with LearningStore.open(tmp_path / "learning.db", clock=lambda: NOW - AGE_091) as s:
        yield s


def seed_confidence_091(store: LearningStore) -> None:
    for outcome in ["success"] * 14 + ["failed"]:
        run_id = store.start_run("fft", CUDA, QWEN)
        store.finish_run(run_id, RunResult(QWEN, 1, None, outcome, models_tried=(QWEN,), wall_s=60.0))


def fft_task() -> TaskSpec:
    return TaskSpec(id="fft", domain=CUDA, language="cuda", prompt="CUDA kernel for an FFT with shared memory",
                    solution_file="fft.cu", test=PhaseSpec("./test", 60.0), starter={"fft.cu": FFT_KERNEL})


def test_guide_example_through_the_public_api(store: LearningStore) -> None:
    seed_confidence_091(store)
    meta = MetaSupervisor(store, OptimizationConfig(), clock=lambda: NOW)
    assert meta.recommend_model_bias() == {CUDA: QWEN}
    result = HybridDecision(meta, OptimizationConfig().hybrid_decision_weights).evaluate_task(
        fft_task(), retry=1, error_type=ErrorType.RUNTIME
    )
    assert result.meta_bias == pytest.approx(0.91)
    assert (result.complexity, result.failure_state) == (1.0, pytest.approx(0.7))
    assert round(result.score, 3) == 0.874
    assert (result.band, result.band_name) == (3, "very complex")
    assert floor_model(GUIDE_CHAIN, result.score) == "deepseek-r1:32b"  # the guide's pick


def test_guide_example_from_stated_scores() -> None:
    assert combine(0.91, 1.0, failure_state(1, "RUNTIME")) == pytest.approx(0.874)


def test_no_evidence_and_disabled_meta_give_the_neutral_score(store: LearningStore) -> None:
    seed_confidence_091(store)
    off = MetaSupervisor(store, replace(OptimizationConfig(), enable_meta_supervisor=False), clock=lambda: NOW)
    assert HybridDecision(off).meta_score(CUDA) == 0.5
    assert HybridDecision(None).meta_score(CUDA) == 0.5
    assert HybridDecision(MetaSupervisor(store, clock=lambda: NOW)).meta_score(DSP) == 0.5


def test_weights_come_from_config() -> None:
    only_failure = HybridDecisionWeights(meta_bias=0.0, complexity=0.0, failure_state=1.0)
    got = HybridDecision(None, only_failure).evaluate(CUDA, "cuda", FFT_KERNEL, retry=5, error_type="PERFORMANCE")
    assert got.score == pytest.approx(1.0)


@pytest.mark.parametrize(("retry", "error", "expected"), [
    (0, None, 0.5), (0, "COMPILATION", 0.5), (1, "RUNTIME", 0.7), (2, "PERFORMANCE", 0.9),
    (1, "LOGIC", 0.75), (1, "SOMETHING_ELSE", 0.7), (9, "PERFORMANCE", 1.0), (3, ErrorType.LOGIC, 0.95),
])  # fmt: skip
def test_failure_state_table(retry: int, error: object, expected: float) -> None:
    assert failure_state(retry, error) == pytest.approx(expected)


def test_bands() -> None:
    assert [band(s) for s in (0.0, 0.39, 0.4, 0.59, 0.6, 0.79, 0.8, 1.0)] == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize(("length", "expected"), [(1, [0, 0, 0, 0]), (2, [0, 0, 1, 1]), (3, [0, 0, 1, 2]),
                                                  (4, [0, 0, 2, 3]), (7, [0, 0, 3, 6])])  # fmt: skip
def test_floor_index_per_band(length: int, expected: list[int]) -> None:
    assert [floor_index(length, s) for s in (0.1, 0.5, 0.7, 0.9)] == expected


def test_apply_floor_raises_but_never_lowers() -> None:
    chain = ("a", "b", "c", "d")
    assert apply_floor(0, chain, 0.9) == 3
    assert apply_floor(3, chain, 0.1) == 3
    assert all(apply_floor(i, chain, s / 10) >= i for i in range(4) for s in range(11))
    with pytest.raises(ValueError):
        floor_index(0, 0.5)


# -- complexity -----------------------------------------------------------------------


def test_cuda_rules_verbatim() -> None:
    assert complexity("", "cuda", CUDA) == 0.5
    assert complexity("__global__ void k(){} k<<<1,1>>>();", "cuda", CUDA) == pytest.approx(0.6)
    assert complexity("int i = blockIdx.x;", "cuda", CUDA) == pytest.approx(0.7)
    assert complexity("__shared__ float t[8]; __syncthreads();", "cuda", CUDA) == pytest.approx(0.9)
    assert complexity("cublasSgemm(...)", "cuda", CUDA) == pytest.approx(0.8)
    assert complexity(FFT_KERNEL, "cuda", CUDA) == 1.0
    assert complexity("__SHARED__", "cuda", CUDA) == 0.5  # case-sensitive, as the guide's `in`


def test_cpp_rules_verbatim() -> None:
    assert complexity("#include <vector>\nstd::vector<int> v;", "cpp", CPP) == pytest.approx(0.6)
    assert complexity("template <typename T> T f();", "cpp", CPP) == pytest.approx(0.7)
    assert complexity("class Pool { std::thread t; };", "cpp", CPP) == pytest.approx(1.0)


def test_python_rules() -> None:
    assert complexity("def add(a, b):\n    return a + b", "python", PY) == 0.5
    assert complexity("def total(xs):\n    for x in xs: pass", "python", PY) == pytest.approx(0.6)
    assert complexity("class Stack:\n    pass", "python", PY) == pytest.approx(0.7)
    assert complexity("import asyncio\nasync def main(): ...", "python", PY) == pytest.approx(0.8)


def test_dsp_rules_in_any_language() -> None:
    assert complexity("Apply a gain to the buffer", "python", DSP) == pytest.approx(0.6)
    assert complexity("Write a biquad filter", "cpp", DSP) == pytest.approx(0.7)
    assert complexity("Real-time FFT convolution with SIMD", "cpp", DSP) == pytest.approx(1.0)
    assert complexity("assess the message", "cpp", DSP) == 0.5  # "sse" only at a word start


def test_docs_rules() -> None:
    assert complexity("Update the README", "markdown", DOCS) == pytest.approx(0.3)
    assert complexity("Tests with a mock clock and parametrized cases", "python", DOCS) == pytest.approx(0.7)
    assert complexity("Property-based tests with hypothesis", "python", DOCS) == pytest.approx(0.8)
