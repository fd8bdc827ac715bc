"""Run lifecycle, the append-only event log, constraints and transaction rollback."""

from __future__ import annotations

import enum
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kisystem.errors import StoreError
from kisystem.store import LearningStore, RunAlreadyFinished, RunResult, db

T0 = datetime(2025, 11, 10, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[LearningStore]:
    with LearningStore.open(tmp_path / "learning.db", clock=clock) as s:
        yield s


def _count(path: Path, sql: str) -> int:
    return sqlite3.connect(path).execute(sql).fetchone()[0]


def test_start_run_leaves_a_visible_running_row(store: LearningStore) -> None:
    run_id = store.start_run("saxpy", "CUDA/Kernel", "qwen2.5-coder:32b", sandbox="bwrap")
    assert len(run_id) == 32 and int(run_id, 16) >= 0
    run = store.get_run(run_id)
    assert run is not None
    assert (run.task, run.domain, run.model, run.outcome, run.sandbox) == (
        "saxpy", "CUDA/Kernel", "qwen2.5-coder:32b", "running", "bwrap")  # fmt: skip
    assert run.ts == T0 and run.ended_ts is None and run.score_final is None
    assert [e.kind for e in store.events(run_id)] == ["started"]


def test_finish_run_writes_every_final_field(store: LearningStore, clock: FakeClock) -> None:
    run_id = store.start_run("gemm", "CUDA/Kernel", "qwen2.5-coder:32b")
    clock.advance(90)
    result = RunResult(
        model="deepseek-r1:32b", iter=4, score_final=87.5, outcome="failed", phase="PROFILE",
        reason="below target", t_build=12.5, t_test=3.0, t_profile=40.0, tokens_prompt=1200,
        tokens_completion=800, error_type="PERFORMANCE", models_tried=("qwen2.5-coder:32b", "deepseek-r1:32b"),
    )  # fmt: skip
    store.finish_run(run_id, result)
    run = store.get_run(run_id)
    assert run is not None
    assert (run.model, run.iter, run.score_final, run.outcome, run.phase, run.reason) == (
        "deepseek-r1:32b", 4, 87.5, "failed", "PROFILE", "below target")  # fmt: skip
    assert (run.t_build, run.t_test, run.t_profile) == (12.5, 3.0, 40.0)
    assert (run.tokens_prompt, run.tokens_completion, run.error_type) == (1200, 800, "PERFORMANCE")
    assert run.models_tried == ("qwen2.5-coder:32b", "deepseek-r1:32b")
    assert run.ended_ts == T0 + timedelta(seconds=90)
    assert run.wall_s == 90.0
    finished = store.events(run_id)[-1]
    assert finished.kind == "finished" and finished.payload == {"outcome": "failed", "score_final": 87.5}


def test_explicit_wall_time_wins(store: LearningStore) -> None:
    run_id = store.start_run("t", "Tests/Docs", "phi4:latest")
    store.finish_run(run_id, RunResult("phi4:latest", 1, 95.0, "success", wall_s=12.0))
    run = store.get_run(run_id)
    assert run is not None and run.wall_s == 12.0


def test_finishing_twice_is_refused(store: LearningStore) -> None:
    run_id = store.start_run("t", "Tests/Docs", "phi4:latest")
    store.finish_run(run_id, RunResult("phi4:latest", 1, 95.0, "success"))
    with pytest.raises(RunAlreadyFinished, match="already finished as 'success'"):
        store.finish_run(run_id, RunResult("phi4:latest", 2, 10.0, "failed"))
    run = store.get_run(run_id)
    assert run is not None and (run.outcome, run.score_final) == ("success", 95.0)
    assert [e.kind for e in store.events(run_id)] == ["started", "finished"]


def test_finishing_an_unknown_run_is_a_store_error(store: LearningStore) -> None:
    with pytest.raises(StoreError, match="no run with id") as info:
        store.finish_run("nope", RunResult("m", 1, 1.0, "failed"))
    assert not isinstance(info.value, RunAlreadyFinished)


def test_running_is_not_a_final_outcome(store: LearningStore) -> None:
    run_id = store.start_run("t", "Tests/Docs", "m")
    with pytest.raises(ValueError):
        store.finish_run(run_id, RunResult("m", 1, 1.0, "running"))


def test_events_are_append_only(store: LearningStore) -> None:
    run_id = store.start_run("t", "C++/System", "m")
    store.append_event(run_id, "build", {"ok": False, "path": Path("/tmp/x")})
    raw = sqlite3.connect(store.path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("UPDATE run_events SET kind = 'forged'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        raw.execute("DELETE FROM run_events")
    events = store.events(run_id)
    assert [(e.kind, e.payload) for e in events] == [
        ("started", {"task": "t", "model": "m", "sandbox": None}),
        ("build", {"ok": False, "path": "/tmp/x"}),
    ]


def test_foreign_key_is_enforced(store: LearningStore) -> None:
    with pytest.raises(StoreError, match="FOREIGN KEY"):
        store.append_event("no-such-run", "build", {})
    assert _count(store.path, "SELECT COUNT(*) FROM run_events") == 0


def test_runs_with_events_cannot_be_deleted(store: LearningStore) -> None:
    store.start_run("t", "C++/System", "m")
    raw = sqlite3.connect(store.path)
    raw.execute("PRAGMA foreign_keys = ON")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        raw.execute("DELETE FROM runs")


@pytest.mark.parametrize(
    "result",
    [
        RunResult("m", 1, 150.0, "success"),
        RunResult("m", 1, 50.0, "bogus"),  # type: ignore[arg-type]
        RunResult("m", 1, 50.0, "failed", phase="LINK"),  # type: ignore[arg-type]
        RunResult("m", 1, 50.0, "failed", error_type="SYNTAX"),  # type: ignore[arg-type]
        RunResult("m", -1, 50.0, "failed"),
    ],
)
def test_a_write_failing_mid_transaction_rolls_back(store: LearningStore, result: RunResult) -> None:
    # finish_run appends its 'finished' event before the UPDATE that violates a CHECK.
    run_id = store.start_run("t", "Audio/DSP", "m")
    with pytest.raises(StoreError, match="CHECK constraint"):
        store.finish_run(run_id, result)
    run = store.get_run(run_id)
    assert run is not None and run.outcome == "running" and run.score_final is None
    assert [e.kind for e in store.events(run_id)] == ["started"]


def test_write_block_rolls_back_on_exception(tmp_path: Path) -> None:
    LearningStore.open(tmp_path / "l.db").close()
    conn = db.connect(tmp_path / "l.db")
    with pytest.raises(RuntimeError), db.write(conn):
        conn.execute("INSERT INTO runs (run_id, task, domain, model, ts) VALUES ('a', 't', 'd', 'm', 'x')")
        raise RuntimeError("boom")
    assert not conn.in_transaction
    assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0


def test_bad_sandbox_level_is_refused(store: LearningStore) -> None:
    with pytest.raises(StoreError, match="CHECK constraint"):
        store.start_run("t", "Audio/DSP", "m", sandbox="docker")  # type: ignore[arg-type]
    assert store.recent_runs() == []


def test_enum_members_are_stored_as_their_values(store: LearningStore) -> None:
    class Phase(enum.Enum):
        BUILD = "BUILD"

    run_id = store.start_run("t", "C++/System", "m")
    store.finish_run(run_id, RunResult("m", 1, 0.0, "failed", phase=Phase.BUILD))  # type: ignore[arg-type]
    run = store.get_run(run_id)
    assert run is not None and run.phase == "BUILD"


def test_mark_interrupted_only_touches_stale_running_rows(store: LearningStore, clock: FakeClock) -> None:
    stale = store.start_run("stale", "CUDA/Kernel", "m")
    done = store.start_run("done", "CUDA/Kernel", "m")
    store.finish_run(done, RunResult("m", 1, 90.0, "success"))
    clock.advance(7200)
    fresh = store.start_run("fresh", "CUDA/Kernel", "m")
    clock.advance(10)

    assert store.mark_interrupted(older_than_s=3600) == [stale]

    outcomes = {r.task: r.outcome for r in store.recent_runs()}
    assert outcomes == {"stale": "interrupted", "done": "success", "fresh": "running"}
    run = store.get_run(stale)
    assert run is not None and run.ended_ts == clock.now and run.reason
    assert store.events(stale)[-1].kind == "interrupted"
    with pytest.raises(RunAlreadyFinished):
        store.finish_run(stale, RunResult("m", 1, 90.0, "success"))
    assert store.mark_interrupted(older_than_s=3600) == []
    assert fresh


def test_recent_runs_newest_first_with_domain_and_limit(store: LearningStore, clock: FakeClock) -> None:
    for i, domain in enumerate(["A", "B", "A", "B", "A"]):
        store.start_run(f"t{i}", domain, "m")
        clock.advance(1)
    assert [r.task for r in store.recent_runs()] == ["t4", "t3", "t2", "t1", "t0"]
    assert [r.task for r in store.recent_runs(limit=2, domain="A")] == ["t4", "t2"]
    assert store.get_run("missing") is None


def test_naive_clock_is_rejected(tmp_path: Path) -> None:
    with LearningStore.open(tmp_path / "l.db", clock=lambda: datetime(2025, 1, 1)) as store:
        with pytest.raises(ValueError, match="naive"):
            store.start_run("t", "d", "m")
        assert store.recent_runs() == []


def test_closed_store_raises_store_error(tmp_path: Path) -> None:
    store = LearningStore.open(tmp_path / "l.db")
    store.close()
    with pytest.raises(StoreError):
        store.recent_runs()
