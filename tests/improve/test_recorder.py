"""The loop records its own feedback: a scripted model, real builds, tests, sandbox and database."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from kisystem.config import OptimizationConfig
from kisystem.improve.feedback import FeedbackLoop
from kisystem.improve.recorder import FeedbackRecorder
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.supervisor import LoopEvent, Supervisor
from kisystem.loop.taskspec import load_task
from kisystem.store.learning import LearningStore
from tests.loop.fakes import ScriptedModel
from tests.loop.test_supervisor import DATA, GOOD, INVENTORY, WRONG

PY = "Python/General"


@pytest.fixture
def store(tmp_path: Path):
    with LearningStore.open(tmp_path / "learning.db") as s:
        yield s


@pytest.fixture
def task():
    return load_task(DATA / "add.toml")


def supervisor(tmp_path: Path, store: LearningStore, script: dict, on_event, **config) -> Supervisor:
    cfg = replace(OptimizationConfig(), **config)
    attempts = AttemptRunner(PhaseRunner(cfg), tmp_path / "ws")
    return Supervisor(cfg, INVENTORY, ScriptedModel(script), store, attempts, on_event=on_event)


def rows(fb: FeedbackLoop) -> list[tuple]:
    return [(e.agent_id, e.operation_id.split(":")[1], e.type, e.source, e.get("error_type")) for e in fb.entries()]


async def test_a_run_that_escalates_records_each_test_and_the_outcome(tmp_path, store, task) -> None:
    fb = FeedbackLoop(store)
    seen: list[LoopEvent] = []
    sup = supervisor(tmp_path, store, {"small": [WRONG, WRONG], "medium": [GOOD]},
                     FeedbackRecorder(fb, forward=seen.append), repair_logic_errors=True)
    result = await sup.run_task(task)
    assert result.outcome == "success"
    assert rows(fb) == [
        ("small", "1", "failure", "test", "LOGIC"),
        ("small", "2", "failure", "test", "LOGIC"),
        ("medium", "3", "success", "test", None),
        ("medium", "3", "success", "system", None),
    ]
    entries = fb.entries()
    assert {e.operation_id.split(":")[0] for e in entries} == {result.run_id}
    assert all(e.context["domain"] == PY and e.context["task"] == "add" for e in entries)
    first = entries[0]
    assert first.details["rule"] and first.details["signature"] and first.details["hint"]
    assert first.details["seconds"] > 0 and "passed" not in first.details  # self-reported counts are not kept
    assert entries[-1].score == 1.0 and entries[-1].details["outcome"] == "success"
    assert [e.kind for e in seen][0] == "start" and seen[-1].kind == "exit"  # every event went on


async def test_an_exhausted_run_is_a_failure_with_the_last_error(tmp_path, store, task) -> None:
    fb = FeedbackLoop(store)
    script = {m: [WRONG, WRONG] for m in ("small", "medium", "large")}
    await supervisor(tmp_path, store, script, FeedbackRecorder(fb)).run_task(task)
    outcome = [e for e in fb.entries() if e.source == "system"]
    assert [(e.agent_id, e.type, e.get("error_type"), e.details["outcome"]) for e in outcome] == [
        ("large", "failure", "LOGIC", "exhausted")]
    assert outcome[0].details["rule"] == fb.entries()[0].details["rule"]
    assert sorted({e.agent_id for e in fb.entries() if e.source == "test"}) == ["large", "medium", "small"]


async def test_an_answer_without_code_is_a_failure(tmp_path, store, task) -> None:
    fb = FeedbackLoop(store)
    sup = supervisor(tmp_path, store, {"small": ["I cannot help with that.", GOOD]}, FeedbackRecorder(fb))
    await sup.run_task(task)
    first = fb.entries()[0]
    assert (first.type, first.source, first.details["rule"], first.details["phase"]) == (
        "failure", "test", "generate.no_code", "GENERATE")


async def test_a_recording_error_never_breaks_the_run(tmp_path, store, task, caplog) -> None:
    class Broken(FeedbackLoop):
        def record_feedback(self, *args, **kwargs):
            raise RuntimeError("disk on fire")

    seen: list[str] = []
    recorder = FeedbackRecorder(Broken(store), forward=lambda e: seen.append(e.kind))
    with caplog.at_level(logging.WARNING, logger="kisystem.improve.recorder"):
        result = await supervisor(tmp_path, store, {"small": [GOOD]}, recorder).run_task(task)
    assert result.outcome == "success" and "exit" in seen
    assert "feedback not recorded for the test event" in caplog.text and "disk on fire" in caplog.text


async def test_scripted_runs_give_patterns_and_learnings(tmp_path, store, task) -> None:
    fb = FeedbackLoop(store)
    script = {"small": [WRONG] * 6, "medium": [GOOD] * 3}
    sup = supervisor(tmp_path, store, script, FeedbackRecorder(fb, domain_of=lambda task_id: PY),
                     repair_logic_errors=True)
    for _ in range(3):
        await sup.run_task(task)
    patterns = {(p.agent_id, p.pattern_type, p.details["source"]) for p in fb.detect_patterns()}
    assert {("small", "failure", "test"), ("medium", "success", "test")} <= patterns
    learnings = fb.generate_learnings("small")
    assert [item.learning_type for item in learnings if item.learning_type == "error_avoidance"]
    assert "Lessons from earlier runs" in fb.lessons_for(PY, "small", 400)
    assert fb.summary("small").success_rate == 0.0


async def test_profiled_iterations_give_performance_feedback(tmp_path, store, task) -> None:
    from kisystem.loop.taskspec import ProfileSpec

    fb = FeedbackLoop(store)
    slow = replace(task, profile=ProfileSpec("python -c 'import time; time.sleep(0.3)'", 20, reference_time_s=0.05),
                   target_score=95)
    await supervisor(tmp_path, store, {"small": [GOOD, GOOD]}, FeedbackRecorder(fb),
                     max_optimization_iterations=2).run_task(slow)
    performance = [e for e in fb.entries() if e.type == "performance"]
    assert [(e.agent_id, e.source, e.operation_id.split(":")[1]) for e in performance] == [
        ("small", "system", "1"), ("small", "system", "2")]
    assert all(0.8 <= e.score < 0.95 and e.details["tier"] in (0, 1) for e in performance)
    [outcome] = [e for e in fb.entries() if e.source == "system" and e.type == "failure"]
    assert outcome.details["outcome"] == "failed"
