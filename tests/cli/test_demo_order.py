"""The demo's task order: the queue's pick from the learning database, and when it is a learned one."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from kisystem.cli.demo_cmd import interleave, pick_next
from kisystem.config import OptimizationConfig
from kisystem.loop.humaneval import humaneval_spec, read_humaneval
from kisystem.models.inventory import load_inventory
from kisystem.store.learning import LearningStore, RunResult
from kisystem.taskpack import pack_task

INVENTORY = load_inventory("embedded")


def tasks():
    humaneval = [humaneval_spec(p) for p in read_humaneval()[:3]]
    return humaneval, [pack_task("fir-filter"), pack_task("biquad-cascade")]


def test_pack_tasks_are_spread_over_the_list() -> None:
    humaneval, pack = tasks()
    order = [t.id for t in interleave(humaneval, pack)]
    assert order == ["pack.fir-filter", "HumanEval_0", "pack.biquad-cascade", "HumanEval_1", "HumanEval_2"]


def test_an_empty_record_picks_like_the_static_prior_and_a_solved_domain_yields(tmp_path) -> None:
    humaneval, pack = tasks()
    pending = interleave(humaneval, pack)
    with LearningStore.open(tmp_path / "learning.db") as store:
        sup = SimpleNamespace(store=store, config=OptimizationConfig())
        first, why = pick_next(sup, INVENTORY, pending)
        assert why is None  # nothing learned yet: the learned pick is the static one
        assert first.domain == "Python/General"  # the faster static ETA
        run = store.start_run(first.id, first.domain, "qwen2.5-coder-0.5b")
        store.finish_run(run, RunResult("qwen2.5-coder-0.5b", 1, 100.0, "success", wall_s=12.0))
        pending.remove(first)
        chosen, why = pick_next(sup, INVENTORY, pending)
        assert chosen.domain == "Audio/DSP"  # a domain without a record outranks one that is solved
        assert why and chosen.id in why and "Python/General priority" in why


def test_a_disabled_meta_supervisor_learns_no_priorities(tmp_path) -> None:
    humaneval, pack = tasks()
    pending = interleave(humaneval, pack)
    with LearningStore.open(tmp_path / "learning.db") as store:
        sup = SimpleNamespace(store=store, config=replace(OptimizationConfig(), enable_meta_supervisor=False))
        run = store.start_run("HumanEval_0", "Python/General", "qwen2.5-coder-0.5b")
        store.finish_run(run, RunResult("qwen2.5-coder-0.5b", 1, 100.0, "success", wall_s=12.0))
        chosen, _ = pick_next(sup, INVENTORY, pending)
        assert chosen.domain == "Python/General"
