"""The two small additions to LearningStore the queue needs: a chosen run id, and interrupting one run."""

from __future__ import annotations

from pathlib import Path

from kisystem.store.learning import LearningStore, RunResult


def test_interrupt_run_touches_only_that_run_and_only_while_it_runs(tmp_path: Path) -> None:
    with LearningStore.open(tmp_path / "l.db") as store:
        mine = store.start_run("t", "Python/General", "small", run_id="mine")
        other = store.start_run("t", "Python/General", "small")
        assert mine == "mine"
        assert store.interrupt_run("mine", "attempt died") is True
        assert store.interrupt_run("mine", "again") is False
        assert store.interrupt_run("no-such-run", "x") is False
        assert store.get_run("mine").outcome == "interrupted" and store.get_run("mine").reason == "attempt died"
        assert store.get_run(other).outcome == "running"
        assert [e.kind for e in store.events("mine")] == ["started", "interrupted"]
        assert store.domain_aggregates()[0].runs == 1  # folded into the aggregates once
        store.finish_run(other, RunResult("small", 1, 100.0, "success"))
        assert store.interrupt_run(other, "too late") is False
        assert store.domain_aggregates()[0].runs == 2
