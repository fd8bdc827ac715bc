"""Numbered schema migrations, applied in order when the store opens.

The schema version lives in ``PRAGMA user_version``.  Each migration runs in its own
``BEGIN IMMEDIATE`` transaction together with the version bump, so a failed step leaves
the database at the previous version, and two processes opening a fresh file at once
apply every step exactly once.  Never edit a released migration: append a new one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from kisystem.errors import StoreError
from kisystem.store.db import translate, write


@dataclass(frozen=True)
class Migration:
    """One schema step: its version, a description, its SQL statements, and an optional
    ``backfill`` run after them in the same transaction (for data SQL cannot compute portably).
    """

    version: int
    description: str
    statements: tuple[str, ...]
    backfill: Callable[[sqlite3.Connection], None] | None = None


_RUNS = """
CREATE TABLE runs (
    run_id            TEXT PRIMARY KEY,
    task              TEXT NOT NULL,
    domain            TEXT NOT NULL,
    model             TEXT NOT NULL,
    iter              INTEGER NOT NULL DEFAULT 0 CHECK (iter >= 0),
    score_final       REAL CHECK (score_final IS NULL OR score_final BETWEEN 0 AND 100),
    outcome           TEXT NOT NULL DEFAULT 'running' CHECK (outcome IN
                        ('running', 'success', 'failed', 'exhausted', 'aborted', 'error', 'interrupted')),
    phase             TEXT CHECK (phase IS NULL OR phase IN ('BUILD', 'TEST', 'PROFILE', 'GENERATE')),
    reason            TEXT,
    t_build           REAL NOT NULL DEFAULT 0 CHECK (t_build >= 0),
    t_test            REAL NOT NULL DEFAULT 0 CHECK (t_test >= 0),
    t_profile         REAL NOT NULL DEFAULT 0 CHECK (t_profile >= 0),
    ts                TEXT NOT NULL,
    ended_ts          TEXT,
    tokens_prompt     INTEGER NOT NULL DEFAULT 0 CHECK (tokens_prompt >= 0),
    tokens_completion INTEGER NOT NULL DEFAULT 0 CHECK (tokens_completion >= 0),
    error_type        TEXT CHECK (error_type IS NULL OR error_type IN
                        ('COMPILATION', 'RUNTIME', 'PERFORMANCE', 'LOGIC')),
    models_tried      TEXT NOT NULL DEFAULT '[]',
    wall_s            REAL CHECK (wall_s IS NULL OR wall_s >= 0)
)
"""

_RUN_EVENTS = """
CREATE TABLE run_events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id  TEXT NOT NULL REFERENCES runs(run_id),
    ts      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    payload TEXT NOT NULL DEFAULT '{}'
)
"""

_NO_UPDATE = """
CREATE TRIGGER run_events_no_update BEFORE UPDATE ON run_events
BEGIN SELECT RAISE(ABORT, 'run_events is append-only'); END
"""

_NO_DELETE = """
CREATE TRIGGER run_events_no_delete BEFORE DELETE ON run_events
BEGIN SELECT RAISE(ABORT, 'run_events is append-only'); END
"""

_DOMAIN_AGG = """
CREATE TABLE domain_agg (
    domain          TEXT PRIMARY KEY,
    runs            INTEGER NOT NULL DEFAULT 0,
    successes       INTEGER NOT NULL DEFAULT 0,
    sum_wall_s      REAL NOT NULL DEFAULT 0,
    wall_n          INTEGER NOT NULL DEFAULT 0,
    last_error_ts   TEXT,
    last_success_ts TEXT
)
"""

_DOMAIN_MODEL_AGG = """
CREATE TABLE domain_model_agg (
    domain              TEXT NOT NULL,
    model               TEXT NOT NULL,
    runs                INTEGER NOT NULL DEFAULT 0,
    successes           INTEGER NOT NULL DEFAULT 0,
    decayed_success_sum REAL NOT NULL DEFAULT 0,
    decayed_run_sum     REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (domain, model)
) WITHOUT ROWID
"""


def _backfill_aggregates(conn: sqlite3.Connection) -> None:
    # Imported here: learning imports this module.  The fold is the one finish_run uses,
    # so backfilled and live aggregates cannot disagree.
    from kisystem.store.learning import rebuild_aggregates

    rebuild_aggregates(conn)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "runs, append-only run_events, per-domain index",
        (
            _RUNS,
            _RUN_EVENTS,
            _NO_UPDATE,
            _NO_DELETE,
            "CREATE INDEX idx_runs_domain_ts ON runs(domain, ts)",
            "CREATE INDEX idx_run_events_run ON run_events(run_id, id)",
        ),
    ),
    Migration(
        2,
        "runs.sandbox level, per-(domain, model) index",
        (
            (
                "ALTER TABLE runs ADD COLUMN sandbox TEXT"
                " CHECK (sandbox IS NULL OR sandbox IN ('bwrap', 'unshare', 'none'))"
            ),
            "CREATE INDEX idx_runs_domain_model_ts ON runs(domain, model, ts)",
        ),
    ),
    Migration(
        3,
        "per-domain and per-(domain, model) aggregates kept on every write, backfilled",
        (_DOMAIN_AGG, _DOMAIN_MODEL_AGG),
        _backfill_aggregates,
    ),
)

LATEST_VERSION = MIGRATIONS[-1].version


def current_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(
    conn: sqlite3.Connection,
    migrations: tuple[Migration, ...] = MIGRATIONS,
    target: int | None = None,
) -> int:
    """Apply every migration above the current version (up to ``target``); return the version."""
    latest = migrations[-1].version
    if current_version(conn) > latest:
        raise StoreError(
            f"learning database schema version {current_version(conn)} is newer than "
            f"this kisystem supports ({latest}); upgrade kisystem"
        )
    for step in migrations:
        if target is not None and step.version > target:
            break
        _apply(conn, step)
    return current_version(conn)


def _apply(conn: sqlite3.Connection, step: Migration) -> None:
    with translate(f"schema migration {step.version} ({step.description}) failed"), write(conn):
        # Re-read under the write lock: another process may have applied it meanwhile.
        if current_version(conn) >= step.version:
            return
        for statement in step.statements:
            conn.execute(statement)
        if step.backfill is not None:
            step.backfill(conn)
        conn.execute(f"PRAGMA user_version = {int(step.version)}")
