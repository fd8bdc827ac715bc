"""The ensemble as the loop's generation strategy (``ensemble.in_loop``): a turn after the chain is
exhausted, or first for a complex task; off by default.  Scripted models, real sandboxed tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kisystem.config import EnsembleSettings, OptimizationConfig
from kisystem.ensemble.loop import ENSEMBLE_ATTEMPTS, EnsembleTurn, in_loop_strategy
from kisystem.ensemble.members import Tier
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import load_task
from kisystem.models.inventory import parse_inventory
from kisystem.store.learning import LearningStore
from tests.loop.fakes import ScriptedModel

TASK = Path(__file__).parents[1] / "loop" / "data" / "loop" / "add.toml"
GOOD = "```python\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
INVENTORY = parse_inventory({
    "endpoints": {"e": {"backend": "openai", "base_url": "http://127.0.0.1:9"}},
    "models": [{"name": n, "rank": i, "timeout_s": 30, "endpoint": "e"} for i, n in enumerate(("small", "large"), 1)],
    "routes": {"Python/General": {"start": "small", "escalation": ["large"]}},
}, "test inventory")  # fmt: skip


@pytest.fixture
def store(tmp_path):
    with LearningStore.open(tmp_path / "learning.db") as s:
        yield s


def supervisor(tmp_path, store, script, **ensemble):
    settings = replace(EnsembleSettings(), max_samples_per_model=2, **ensemble)
    cfg = replace(OptimizationConfig(), stoploss_per_model=1, ensemble=settings)
    model = ScriptedModel(script)
    return Supervisor(cfg, INVENTORY, model, store, AttemptRunner(PhaseRunner(cfg), tmp_path / "ws")), model


def test_off_by_default_and_configured_otherwise() -> None:
    assert OptimizationConfig().ensemble.in_loop == "off" and in_loop_strategy(OptimizationConfig()) is None
    on = replace(OptimizationConfig(), ensemble=replace(EnsembleSettings(), in_loop="complex", in_loop_tier="expert"))
    turn = in_loop_strategy(on)
    assert isinstance(turn, EnsembleTurn) and (turn.mode, turn.min_tier) == ("complex", Tier.EXPERT)


async def test_an_exhausted_chain_gets_one_ensemble_turn_that_can_solve_it(tmp_path, store) -> None:
    # chain: small then large fail once each (stop-loss 1); the turn asks the medium tier: small twice
    sup, model = supervisor(tmp_path, store, {"small": [WRONG, WRONG, GOOD], "large": [WRONG]},
                            in_loop="after_exhausted", in_loop_tier="medium")
    result = await sup.run_task(load_task(TASK))
    assert (result.outcome, result.iterations, result.model, result.score) == ("success", 3, "small", 100.0)
    assert "the ensemble (medium, 2 members): best score 100 by small" in result.reason
    assert result.model_attempts == {"small": 3, "large": 1}
    turn = [r for r in model.requests[2:]]
    assert [(r.model, r.temperature, r.seed) for r in turn] == [("small", 0.8, ENSEMBLE_ATTEMPTS),
                                                                ("small", 0.8, ENSEMBLE_ATTEMPTS + 1)]
    events = store.events(result.run_id)
    [ens] = [e.payload for e in events if e.kind == "ensemble"]
    assert (ens["tier"], ens["members"], ens["consensus"]["method"], ens["iteration"]) == ("medium", 2, "tests", 3)
    assert ens["consensus"]["confidence"] == 0.5 and ens["consensus"]["score"] == 100.0 and ens["model"] == "small"
    assert store.get_run(result.run_id).outcome == "success"
    assert not (tmp_path / "ws" / result.run_id / f"attempt-{ENSEMBLE_ATTEMPTS}").exists()  # solved: removed


async def test_a_turn_that_finds_nothing_leaves_the_run_exhausted_with_its_reason(tmp_path, store) -> None:
    sup, _ = supervisor(tmp_path, store, {"small": [WRONG, WRONG, WRONG], "large": [WRONG]},
                        in_loop="after_exhausted", in_loop_tier="simple", max_concurrent_per_endpoint=1)
    result = await sup.run_task(load_task(TASK))
    assert result.outcome == "exhausted" and result.iterations == 3
    assert result.reason.startswith("every model of the chain failed: small, large; the ensemble (simple, 2 members)")
    assert "best score" in result.reason and store.get_run(result.run_id).outcome == "exhausted"
    assert result.model_attempts == {"small": 3, "large": 1}


async def test_a_complex_task_starts_with_the_ensemble(tmp_path, store) -> None:
    sup, model = supervisor(tmp_path, store, {"small": [GOOD], "large": [GOOD]}, in_loop="complex",
                            in_loop_tier="simple")
    result = await sup.run_task(load_task(TASK))
    assert (result.outcome, result.iterations) == ("success", 1)
    assert "the ensemble (simple, 2 members)" in result.reason
    assert all(r.model == "small" for r in model.requests) and len(model.requests) <= 2


async def test_complex_mode_leaves_simpler_tasks_to_the_chain(tmp_path, store) -> None:
    sup, model = supervisor(tmp_path, store, {"small": [GOOD]}, in_loop="complex", in_loop_tier="expert")
    result = await sup.run_task(load_task(TASK))
    assert (result.outcome, result.iterations, len(model.requests)) == ("success", 1, 1)
    assert not [e for e in store.events(result.run_id) if e.kind == "ensemble"]
