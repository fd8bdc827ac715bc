"""Schema tests: a blank database, the upgrade path from schema 1, migration safety."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kisystem.errors import StoreError
from kisystem.store import LATEST_VERSION, MIGRATIONS, LearningStore, Migration, db
from kisystem.store.migrations import current_version, migrate

SPEC_FIELDS = {
    "run_id", "task", "domain", "model", "iter", "score_final", "outcome", "phase", "reason",
    "t_build", "t_test", "t_profile", "ts", "ended_ts", "tokens_prompt", "tokens_completion",
    "error_type", "models_tried", "wall_s",
}  # fmt: skip
OWNER_FIELDS = {"owner_host", "owner_boot", "owner_pid", "owner_started"}
QUEUE_TABLES = {"queue_tasks", "queue_legal", "queue_transitions", "queue_runs", "queue_answers"}
QUEUE_INDEXES = {"idx_queue_claim", "idx_queue_lease", "idx_queue_transitions_task", "idx_queue_runs_open"}
QUEUE_TRIGGERS = {"queue_tasks_insert_queued", "queue_tasks_legal", "queue_tasks_log_insert", "queue_tasks_log_update",
                  "queue_transitions_no_update", "queue_transitions_no_delete"}
FEEDBACK_TABLES = {"feedback_entries", "feedback_aggregates", "feedback_patterns", "feedback_learnings"}
FEEDBACK_INDEXES = {"idx_feedback_agent_ts", "idx_feedback_ts", "idx_feedback_operation", "idx_feedback_learnings_lookup"}
FEEDBACK_TRIGGERS = {"feedback_entries_no_update", "feedback_entries_no_delete"}
OPTIMIZATION_TABLES = {"optimization_plans", "config_versions", "config_activations", "optimization_results"}
OPTIMIZATION_INDEXES = {"idx_config_versions_one_active", "idx_optimization_plans_agent",
                        "idx_optimization_results_plan"}
HEALTH_TRIGGERS = {"health_history_no_update", "health_history_no_delete"}
SCHEDULE_TABLES = {"schedule_jobs", "schedule_runs"}
SCHEDULE_INDEXES = {"idx_schedule_jobs_due", "idx_schedule_runs_task", "idx_schedule_runs_started"}
SCHEDULE_TRIGGERS = {"schedule_runs_no_update", "schedule_runs_no_delete"}
ENSEMBLE_TABLES = {"ensemble_cache"}
ENSEMBLE_INDEXES = {"idx_ensemble_cache_used"}


def _names(conn: sqlite3.Connection, kind: str) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%'", (kind,))
    return {row[0] for row in rows}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def test_blank_database_gets_full_schema(tmp_path: Path) -> None:
    with LearningStore.open(tmp_path / "learning.db") as store:
        assert store.schema_version() == LATEST_VERSION == 12
    conn = sqlite3.connect(tmp_path / "learning.db")
    assert _names(conn, "table") == {"runs", "run_events", "domain_agg", "domain_model_agg", *QUEUE_TABLES,
                                     *FEEDBACK_TABLES, *OPTIMIZATION_TABLES, "health_history",
                                     *SCHEDULE_TABLES, *ENSEMBLE_TABLES}
    assert _names(conn, "index") == {"idx_runs_domain_ts", "idx_runs_domain_model_ts", "idx_run_events_run",
                                     "idx_runs_running", *QUEUE_INDEXES, *FEEDBACK_INDEXES, *OPTIMIZATION_INDEXES,
                                     "idx_health_history_agent", *SCHEDULE_INDEXES, "idx_runs_ts",
                                     *ENSEMBLE_INDEXES}
    assert _names(conn, "trigger") == {"run_events_no_update", "run_events_no_delete", *QUEUE_TRIGGERS,
                                       *FEEDBACK_TRIGGERS, *HEALTH_TRIGGERS, *SCHEDULE_TRIGGERS}
    assert _columns(conn, "runs") == SPEC_FIELDS | {"sandbox", "judge"} | OWNER_FIELDS
    assert _columns(conn, "run_events") == {"id", "run_id", "ts", "kind", "payload"}
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_aggregation_indexes_are_used(tmp_path: Path) -> None:
    LearningStore.open(tmp_path / "l.db").close()
    conn = sqlite3.connect(tmp_path / "l.db")
    query = "SELECT * FROM runs WHERE domain = 'x' AND model = 'm' ORDER BY ts"
    plan = " ".join(str(row[-1]) for row in conn.execute(f"EXPLAIN QUERY PLAN {query}"))
    assert "idx_runs_domain_model_ts" in plan


def test_connection_pragmas(tmp_path: Path) -> None:
    conn = db.connect(tmp_path / "p.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == db.BUSY_TIMEOUT_MS == 5000
    assert conn.isolation_level is None


def test_open_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "learning.db"
    LearningStore.open(path).close()
    assert path.is_file()


def test_upgrade_from_first_schema_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = db.connect(path)
    assert migrate(conn, target=1) == 1
    assert "sandbox" not in _columns(conn, "runs")
    conn.execute(
        "INSERT INTO runs (run_id, task, domain, model, iter, score_final, outcome, ts, wall_s)"
        " VALUES ('old1', 'fft', 'Audio/DSP', 'mistral:7b', 3, 82.5, 'success',"
        " '2025-11-01T10:00:00.000000+00:00', 42.0)"
    )
    conn.close()

    with LearningStore.open(path) as store:
        assert store.schema_version() == LATEST_VERSION
        old = store.get_run("old1")
        assert old is not None
        assert (old.task, old.outcome, old.score_final, old.iter, old.sandbox) == ("fft", "success", 82.5, 3, None)
        new = store.get_run(store.start_run("t", "Audio/DSP", "m", sandbox="unshare"))
        assert new is not None and new.sandbox == "unshare"
    assert "idx_runs_domain_model_ts" in _names(sqlite3.connect(path), "index")


def test_failed_migration_rolls_back_to_previous_version(tmp_path: Path) -> None:
    broken = Migration(2, "broken", ("CREATE TABLE extra (x)", "SELECT * FROM no_such_table"))
    conn = db.connect(tmp_path / "m.db")
    with pytest.raises(StoreError, match="schema migration 2"):
        migrate(conn, (MIGRATIONS[0], broken))
    assert current_version(conn) == 1
    assert "extra" not in _names(conn, "table")


def test_migrations_are_numbered_consecutively() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))


def test_reopening_applies_nothing_twice(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    LearningStore.open(path).close()
    with LearningStore.open(path) as store:
        assert store.schema_version() == LATEST_VERSION


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    sqlite3.connect(path).execute("PRAGMA user_version = 99")
    with pytest.raises(StoreError, match="newer"):
        LearningStore.open(path)


def test_garbage_file_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(StoreError, match="learning database"):
        LearningStore.open(path)


def test_unwritable_parent_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="cannot create directory"):
        LearningStore.open(blocker / "sub" / "learning.db")


def _busy_error(tmp_path: Path) -> sqlite3.OperationalError:
    """A real SQLITE_BUSY error: write to a file another connection holds locked."""
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        sqlite3.connect(tmp_path / "locked.db", timeout=0).execute("CREATE TABLE t (x)")
    except sqlite3.OperationalError as exc:
        return exc
    finally:
        holder.execute("ROLLBACK")
    raise AssertionError("expected a busy error")


def test_connect_retries_busy_errors_that_skip_the_busy_handler(tmp_path: Path) -> None:
    busy = _busy_error(tmp_path)
    calls: list[int] = []

    def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise busy

    db._retry_busy(flaky, timeout_s=5)
    assert len(calls) == 3


def test_connect_gives_up_on_other_errors_and_after_the_timeout(tmp_path: Path) -> None:
    busy = _busy_error(tmp_path)
    calls: list[int] = []

    def broken() -> None:
        calls.append(1)
        raise sqlite3.OperationalError("no such table: x")

    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        db._retry_busy(broken, timeout_s=5)
    assert len(calls) == 1

    def always_busy() -> None:
        raise busy

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        db._retry_busy(always_busy, timeout_s=0.05)
