"""Discounted Thompson sampling: posteriors, discount, cost, and the start it picks."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from kisystem.loop.taskspec import PhaseSpec, TaskSpec
from kisystem.routing.thompson import (
    PRIOR_COST_S,
    Posterior,
    Stint,
    ThompsonPolicy,
    posteriors,
    run_stints,
    start_rates,
    store_stints,
)
from kisystem.store.learning import LearningStore, RunResult

DOMAIN = "Python/General"
CHAIN = ("small", "big")
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def task(domain: str = DOMAIN) -> TaskSpec:
    return TaskSpec(id="t1", domain=domain, language="python", prompt="p", solution_file="s.py",
                    test=PhaseSpec("true", 1.0))


class Clock:
    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def policy(seed: int = 1, clock: Clock | None = None) -> ThompsonPolicy:
    return ThompsonPolicy(random.Random(seed), clock or Clock())


def feed(p: ThompsonPolicy, model: str, solved: int, failed: int, seconds: float = 10.0) -> None:
    for i in range(solved + failed):
        p.observe(DOMAIN, model, i < solved, seconds)


def starts(p: ThompsonPolicy, n: int = 400, chain=CHAIN) -> dict[str, int]:
    counts = dict.fromkeys(chain, 0)
    for _ in range(n):
        counts[p.start_model(task(), chain)] += 1
    return counts


def test_no_evidence_is_the_prior() -> None:
    assert policy().posterior(DOMAIN, "small") == Posterior(1.0, 1.0, PRIOR_COST_S)


def test_posterior_moves_toward_the_better_model() -> None:
    p = policy()
    feed(p, "small", solved=2, failed=18)
    feed(p, "big", solved=16, failed=4)
    assert p.posterior(DOMAIN, "big").mean > 0.7 > 0.2 > p.posterior(DOMAIN, "small").mean
    counts = starts(p)
    assert counts["big"] > 0.95 * sum(counts.values())


def test_evidence_is_per_domain() -> None:
    p = policy()
    feed(p, "big", solved=20, failed=0)
    assert p.posterior("CUDA/Kernel", "big") == Posterior(1.0, 1.0, PRIOR_COST_S)


def test_discount_forgets_old_evidence() -> None:
    clock = Clock(NOW)
    p = policy(clock=clock)
    feed(p, "small", solved=0, failed=20)
    fresh = p.posterior(DOMAIN, "small")
    clock.now = NOW + timedelta(days=90)
    aged = p.posterior(DOMAIN, "small")
    assert fresh.beta == pytest.approx(21.0)
    assert aged.beta < 1.2  # ninety days of decay leave almost only the prior
    assert aged.mean > 0.45


def test_recent_evidence_outweighs_old() -> None:
    old = [Stint(DOMAIN, "small", True, 5.0, NOW - timedelta(days=60)) for _ in range(10)]
    new = [Stint(DOMAIN, "small", False, 5.0, NOW) for _ in range(10)]
    post = posteriors([*old, *new], NOW)["small"]
    assert post.mean < 0.2


def test_cost_matters_cheaper_wins_more_often() -> None:
    p = policy()
    feed(p, "small", solved=10, failed=10, seconds=40.0)
    feed(p, "big", solved=10, failed=10, seconds=5.0)
    counts = starts(p)
    assert counts["big"] > 0.8 * sum(counts.values())
    assert p.posterior(DOMAIN, "big").cost_s < p.posterior(DOMAIN, "small").cost_s


def test_start_rates_count_the_escalation() -> None:
    # start small: solves 1 - 0.5*0.5 = 0.75 for 10 + 0.5*10 = 15 s; start big: 0.5 for 10 s
    assert start_rates([(0.5, 10.0), (0.5, 10.0)]) == pytest.approx([0.05, 0.05])
    assert start_rates([(0.9, 10.0), (0.5, 10.0)]) == pytest.approx([0.95 / 11, 0.05])


@pytest.mark.parametrize("chain", [("a",), ("a", "b"), ("a", "b", "c")])
def test_start_model_always_in_chain(chain) -> None:
    p = policy(seed=7)
    feed(p, "unrelated", solved=5, failed=0)
    assert set(starts(p, 50, chain)) <= set(chain)
    assert all(p.start_model(task(), chain) in chain for _ in range(50))


def test_empty_chain_is_an_error() -> None:
    with pytest.raises(ValueError):
        policy().start_model(task(), ())


def test_same_seed_same_choices() -> None:
    def picks(seed: int) -> list[str]:
        p = policy(seed)
        feed(p, "small", solved=5, failed=5)
        feed(p, "big", solved=5, failed=5)
        return [p.start_model(task(), CHAIN) for _ in range(30)]

    assert picks(3) == picks(3)


def test_history_from_the_learning_store(tmp_path) -> None:
    clock = Clock(NOW)
    with LearningStore.open(tmp_path / "l.db", clock=clock) as store:
        for outcome, tried in [("success", ("small", "big"))] * 8 + [("exhausted", ("small", "big"))] * 2:
            run = store.start_run("t", DOMAIN, tried[0])
            store.finish_run(run, RunResult(model=tried[-1], iter=3, score_final=0, outcome=outcome,
                                            models_tried=tried, wall_s=20.0))
        stints = store_stints(store, DOMAIN)
        assert len(stints) == 20
        p = ThompsonPolicy.from_store(store, random.Random(0), clock)
        small, big = p.posterior(DOMAIN, "small"), p.posterior(DOMAIN, "big")
    assert (small.alpha, small.beta) == pytest.approx((1.0, 11.0))
    assert (big.alpha, big.beta) == pytest.approx((9.0, 3.0))
    assert big.cost_s == pytest.approx((PRIOR_COST_S + 10 * 10.0) / 11)


def test_crashed_and_running_runs_teach_nothing(tmp_path) -> None:
    with LearningStore.open(tmp_path / "l.db", clock=Clock()) as store:
        store.start_run("t", DOMAIN, "small")  # still running
        run = store.start_run("t", DOMAIN, "small")
        store.finish_run(run, RunResult(model="small", iter=1, score_final=0, outcome="error"))
        assert store_stints(store, DOMAIN) == []
        assert all(run_stints(r) == [] for r in store.recent_runs(10))
