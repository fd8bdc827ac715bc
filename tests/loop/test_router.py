from dataclasses import dataclass

import pytest

from kisystem.loop.router import Decision, StopLossRouter, build_chain

CUDA_CHAIN = ("qwen2.5-coder:32b", "deepseek-r1:32b", "deepseek-coder-v2:16b", "qwen2.5:32b")


@dataclass
class Err:
    severity: int = 3
    recoverable: bool = True
    signature: str = "sig"


def test_guide_example_escalates_after_two_runtime_fails():
    router = StopLossRouter(CUDA_CHAIN, stoploss=2)
    assert router.current == "qwen2.5-coder:32b"
    assert router.record_failure(Err(signature="a")) is Decision.CONTINUE
    assert router.record_failure(Err(signature="b")) is Decision.ESCALATE
    assert router.current == "deepseek-r1:32b"
    assert router.tried == ["qwen2.5-coder:32b", "deepseek-r1:32b"]


def test_chain_ends_exhausted_and_never_goes_back():
    router = StopLossRouter(("a", "b"), stoploss=1)
    assert router.record_failure(Err()) is Decision.ESCALATE
    assert router.record_failure(Err()) is Decision.EXHAUSTED
    assert router.current == "b"
    assert router.tried == ["a", "b"]


def test_severity_four_escalates_at_once():
    router = StopLossRouter(("a", "b"), stoploss=5)
    assert router.record_failure(Err(severity=4)) is Decision.ESCALATE


def test_unrecoverable_aborts_without_counting():
    router = StopLossRouter(("a", "b"), stoploss=2)
    assert router.record_failure(Err(recoverable=False)) is Decision.ABORT
    assert router.fails == 0


def test_same_signature_three_times_escalates_even_below_stoploss():
    router = StopLossRouter(("a", "b"), stoploss=5)
    assert router.record_failure(Err(signature="x")) is Decision.CONTINUE
    assert router.record_failure(Err(signature="x")) is Decision.CONTINUE
    assert router.record_failure(Err(signature="x")) is Decision.ESCALATE


def test_different_signatures_are_not_stuck():
    router = StopLossRouter(("a", "b"), stoploss=5)
    for sig in "xyxy":
        assert router.record_failure(Err(signature=sig)) is Decision.CONTINUE


@pytest.mark.parametrize(
    ("start", "available", "expected"),
    [
        (None, None, CUDA_CHAIN),
        ("deepseek-r1:32b", None, CUDA_CHAIN[1:]),
        ("llama3.1:8b", None, ("llama3.1:8b", *CUDA_CHAIN)),
        (None, {"deepseek-r1:32b", "qwen2.5:32b"}, ("deepseek-r1:32b", "qwen2.5:32b")),
    ],
)
def test_build_chain(start, available, expected):
    assert build_chain(CUDA_CHAIN, available, start) == expected


def test_empty_chain_is_refused():
    with pytest.raises(ValueError):
        StopLossRouter((), stoploss=2)


def test_raise_to_only_moves_forward():
    router = StopLossRouter(("a", "b", "c"), stoploss=2)
    assert router.raise_to(0) is Decision.CONTINUE
    assert router.raise_to(2) is Decision.ESCALATE
    assert router.current == "c" and router.tried == ["a", "c"]
    assert router.raise_to(1) is Decision.CONTINUE and router.current == "c"


def test_a_models_own_stoploss_overrides_the_configs():
    router = StopLossRouter(("a", "b"), stoploss=2, per_model={"a": 1, "b": 3})
    assert router.record_failure(Err(signature="1")) is Decision.ESCALATE  # a: its own 1, not 2
    assert [router.record_failure(Err(signature=s)) for s in "234"] == \
        [Decision.CONTINUE, Decision.CONTINUE, Decision.EXHAUSTED]  # b: its own 3
