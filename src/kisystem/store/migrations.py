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


# -- migration 4: the durable task queue -------------------------------------------------
# Lease expiry is unix seconds (REAL) so that claims and recovery compare numbers; every
# other time is ISO-8601 UTC text like the rest of the database.

QUEUE_STATES: tuple[str, ...] = (
    "queued", "leased", "running", "succeeded", "failed", "exhausted", "cancelled", "dead",
)  # fmt: skip
QUEUE_TRANSITIONS: tuple[tuple[str, str], ...] = (
    ("queued", "leased"), ("queued", "cancelled"),
    ("leased", "running"), ("leased", "queued"), ("leased", "cancelled"), ("leased", "dead"),
    ("running", "succeeded"), ("running", "failed"), ("running", "exhausted"),
    ("running", "queued"), ("running", "cancelled"), ("running", "dead"),
    ("failed", "queued"), ("exhausted", "queued"), ("cancelled", "queued"), ("dead", "queued"),
)  # fmt: skip
"""Every legal state change of a queued task; the database rejects any other."""

_QUEUE_TASKS = f"""
CREATE TABLE queue_tasks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    idem_key      TEXT NOT NULL UNIQUE,
    task          TEXT NOT NULL,
    domain        TEXT NOT NULL,
    spec          TEXT NOT NULL,
    source        TEXT,
    priority      REAL CHECK (priority IS NULL OR priority BETWEEN 0 AND 100),
    model         TEXT,
    state         TEXT NOT NULL DEFAULT 'queued'
                    CHECK (state IN ({", ".join(f"'{s}'" for s in QUEUE_STATES)})),
    attempts      INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts  INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    lease_holder  TEXT,
    lease_expires REAL,
    run_id        TEXT,
    outcome       TEXT,
    score         REAL,
    note          TEXT,
    created_ts    TEXT NOT NULL,
    updated_ts    TEXT NOT NULL
)
"""

_QUEUE_LEGAL = """
CREATE TABLE queue_legal (
    from_state TEXT NOT NULL,
    to_state   TEXT NOT NULL,
    PRIMARY KEY (from_state, to_state)
) WITHOUT ROWID
"""

_QUEUE_TRANSITIONS = """
CREATE TABLE queue_transitions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task       INTEGER NOT NULL REFERENCES queue_tasks(id),
    from_state TEXT,
    to_state   TEXT NOT NULL,
    ts         TEXT NOT NULL,
    holder     TEXT,
    attempt    INTEGER NOT NULL,
    note       TEXT
)
"""

_QUEUE_RUNS = """
CREATE TABLE queue_runs (
    run_id  TEXT PRIMARY KEY,
    task    INTEGER NOT NULL REFERENCES queue_tasks(id),
    attempt INTEGER NOT NULL,
    open    INTEGER NOT NULL DEFAULT 1 CHECK (open IN (0, 1))
)
"""

_QUEUE_ANSWERS = """
CREATE TABLE queue_answers (
    task              INTEGER NOT NULL REFERENCES queue_tasks(id),
    key               TEXT NOT NULL,
    model             TEXT NOT NULL,
    text              TEXT NOT NULL,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    finish_reason     TEXT,
    first_token_s     REAL,
    total_s           REAL NOT NULL DEFAULT 0,
    ts                TEXT NOT NULL,
    PRIMARY KEY (task, key)
) WITHOUT ROWID
"""

_QUEUE_TRIGGERS = (
    """
    CREATE TRIGGER queue_tasks_insert_queued BEFORE INSERT ON queue_tasks
    WHEN NEW.state != 'queued'
    BEGIN SELECT RAISE(ABORT, 'a queued task starts in state queued'); END
    """,
    """
    CREATE TRIGGER queue_tasks_legal BEFORE UPDATE OF state ON queue_tasks
    WHEN NEW.state != OLD.state AND NOT EXISTS
        (SELECT 1 FROM queue_legal WHERE from_state = OLD.state AND to_state = NEW.state)
    BEGIN SELECT RAISE(ABORT, 'illegal queue transition'); END
    """,
    """
    CREATE TRIGGER queue_tasks_log_insert AFTER INSERT ON queue_tasks
    BEGIN
        INSERT INTO queue_transitions (task, from_state, to_state, ts, holder, attempt, note)
        VALUES (NEW.id, NULL, NEW.state, NEW.updated_ts, NULL, NEW.attempts, NEW.note);
    END
    """,
    """
    CREATE TRIGGER queue_tasks_log_update AFTER UPDATE OF state ON queue_tasks
    WHEN NEW.state != OLD.state
    BEGIN
        INSERT INTO queue_transitions (task, from_state, to_state, ts, holder, attempt, note)
        VALUES (NEW.id, OLD.state, NEW.state, NEW.updated_ts,
                COALESCE(NEW.lease_holder, OLD.lease_holder), NEW.attempts, NEW.note);
    END
    """,
    """
    CREATE TRIGGER queue_transitions_no_update BEFORE UPDATE ON queue_transitions
    BEGIN SELECT RAISE(ABORT, 'queue_transitions is append-only'); END
    """,
    """
    CREATE TRIGGER queue_transitions_no_delete BEFORE DELETE ON queue_transitions
    BEGIN SELECT RAISE(ABORT, 'queue_transitions is append-only'); END
    """,
)


def _fill_queue_legal(conn: sqlite3.Connection) -> None:
    conn.executemany("INSERT INTO queue_legal (from_state, to_state) VALUES (?, ?)", QUEUE_TRANSITIONS)


def _backfill_aggregates(conn: sqlite3.Connection) -> None:
    # Imported here: learning imports this module.  The fold is the one finish_run uses,
    # so backfilled and live aggregates cannot disagree.
    from kisystem.store.learning import rebuild_aggregates

    rebuild_aggregates(conn)


# -- migration 7: the feedback loop (seed C) ---------------------------------------------
# Scores are stored 0..1 whatever the type (a user's 1-5 rating is mapped before it is
# written); details and context are JSON objects.  Entries are append-only, so the
# aggregates, folded forward in the same transaction as each insert, only ever grow.

FEEDBACK_TYPES: tuple[str, ...] = (
    "success", "failure", "quality_score", "user_rating", "performance", "coverage", "security", "documentation",
)  # fmt: skip
FEEDBACK_SOURCES: tuple[str, ...] = ("agent", "guardian", "user", "system", "test", "flock")


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_FEEDBACK_ENTRIES = f"""
CREATE TABLE feedback_entries (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    ts           TEXT NOT NULL,
    agent_id     TEXT NOT NULL CHECK (agent_id != ''),
    operation_id TEXT NOT NULL CHECK (operation_id != ''),
    type         TEXT NOT NULL CHECK (type IN ({_in(FEEDBACK_TYPES)})),
    score        REAL NOT NULL CHECK (score BETWEEN 0 AND 1),
    source       TEXT NOT NULL CHECK (source IN ({_in(FEEDBACK_SOURCES)})),
    details      TEXT NOT NULL DEFAULT '{{}}',
    context      TEXT NOT NULL DEFAULT '{{}}'
)
"""

_FEEDBACK_AGGREGATES = """
CREATE TABLE feedback_aggregates (
    agent_id   TEXT NOT NULL,
    type       TEXT NOT NULL,
    count      INTEGER NOT NULL DEFAULT 0,
    score_sum  REAL NOT NULL DEFAULT 0,
    min_score  REAL,
    max_score  REAL,
    last_score REAL,
    last_ts    TEXT,
    PRIMARY KEY (agent_id, type)
) WITHOUT ROWID
"""

_FEEDBACK_PATTERNS = """
CREATE TABLE feedback_patterns (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id     TEXT NOT NULL,
    pattern_type TEXT NOT NULL CHECK (pattern_type IN ('failure', 'success', 'quality', 'performance', 'behavior')),
    key          TEXT NOT NULL,
    domain       TEXT,
    description  TEXT NOT NULL,
    frequency    INTEGER NOT NULL CHECK (frequency >= 0),
    total        INTEGER NOT NULL CHECK (total >= frequency),
    confidence   REAL NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    first_ts     TEXT NOT NULL,
    last_ts      TEXT NOT NULL,
    detected_ts  TEXT NOT NULL,
    lookback_days INTEGER NOT NULL,
    details      TEXT NOT NULL DEFAULT '{}',
    UNIQUE (agent_id, pattern_type, key)
)
"""

_FEEDBACK_LEARNINGS = """
CREATE TABLE feedback_learnings (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id      TEXT NOT NULL,
    learning_type TEXT NOT NULL CHECK (learning_type IN
                    ('error_avoidance', 'positive_reinforcement', 'optimization', 'pattern_recognition',
                     'skill_enhancement')),
    key           TEXT NOT NULL,
    domain        TEXT,
    title         TEXT NOT NULL,
    description   TEXT NOT NULL,
    impact        REAL NOT NULL CHECK (impact BETWEEN 0 AND 1),
    pattern_ids   TEXT NOT NULL DEFAULT '[]',
    created_ts    TEXT NOT NULL,
    updated_ts    TEXT NOT NULL,
    UNIQUE (agent_id, learning_type, key)
)
"""

_FEEDBACK_TRIGGERS = (
    """
    CREATE TRIGGER feedback_entries_no_update BEFORE UPDATE ON feedback_entries
    BEGIN SELECT RAISE(ABORT, 'feedback_entries is append-only'); END
    """,
    """
    CREATE TRIGGER feedback_entries_no_delete BEFORE DELETE ON feedback_entries
    BEGIN SELECT RAISE(ABORT, 'feedback_entries is append-only'); END
    """,
)


# -- migration 8: configuration versions and optimization plans (seed C, DESIGN decision 7) --
# A version is a JSON overlay over the shipped routing/tuning configuration; at most one is
# active (none: the shipped one).  Plans and results are kept for the history.

PLAN_STATUSES: tuple[str, ...] = ("proposed", "awaiting_approval", "applied_kept", "rolled_back", "rejected")
SEVERITIES: tuple[str, ...] = ("LOW", "MEDIUM", "HIGH", "CRITICAL")

_OPTIMIZATION_PLANS = f"""
CREATE TABLE optimization_plans (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_ts  TEXT NOT NULL,
    updated_ts  TEXT NOT NULL,
    agent       TEXT,
    domain      TEXT,
    opportunity TEXT NOT NULL,
    severity    TEXT NOT NULL CHECK (severity IN ({_in(SEVERITIES)})),
    strategy    TEXT NOT NULL,
    evidence    TEXT NOT NULL DEFAULT '{{}}',
    changes     TEXT NOT NULL DEFAULT '[]',
    effect      TEXT NOT NULL,
    metric      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ({_in(PLAN_STATUSES)}))
)
"""

_CONFIG_VERSIONS = """
CREATE TABLE config_versions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    parent     INTEGER REFERENCES config_versions(id),
    created_ts TEXT NOT NULL,
    reason     TEXT NOT NULL,
    overlay    TEXT NOT NULL,
    plan       INTEGER REFERENCES optimization_plans(id),
    state      TEXT NOT NULL DEFAULT 'candidate' CHECK (state IN ('candidate', 'kept', 'rolled_back')),
    active     INTEGER NOT NULL DEFAULT 0 CHECK (active IN (0, 1))
)
"""

_CONFIG_ACTIVATIONS = """
CREATE TABLE config_activations (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    ts      TEXT NOT NULL,
    version INTEGER REFERENCES config_versions(id),
    reason  TEXT NOT NULL
)
"""

_OPTIMIZATION_RESULTS = """
CREATE TABLE optimization_results (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    plan    INTEGER NOT NULL REFERENCES optimization_plans(id),
    version INTEGER REFERENCES config_versions(id),
    ts      TEXT NOT NULL,
    kept    INTEGER NOT NULL CHECK (kept IN (0, 1)),
    metric  TEXT NOT NULL,
    before  TEXT NOT NULL DEFAULT '{}',
    after   TEXT NOT NULL DEFAULT '{}',
    detail  TEXT NOT NULL
)
"""


# -- migration 9: health history (seed C's health_history) ---------------------------------
# Every health computation is appended; the trend compares the newest with earlier rows.

HEALTH_TRENDS: tuple[str, ...] = ("improving", "stable", "declining")

_HEALTH_HISTORY = f"""
CREATE TABLE health_history (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    ts                  TEXT NOT NULL,
    agent               TEXT NOT NULL,
    days                INTEGER NOT NULL CHECK (days > 0),
    score               REAL NOT NULL CHECK (score BETWEEN 0 AND 100),
    success_rate        REAL NOT NULL CHECK (success_rate BETWEEN 0 AND 1),
    response_time_score REAL NOT NULL CHECK (response_time_score BETWEEN 0 AND 1),
    code_quality        REAL NOT NULL CHECK (code_quality BETWEEN 0 AND 1),
    error_rate          REAL NOT NULL CHECK (error_rate BETWEEN 0 AND 1),
    runs                INTEGER NOT NULL CHECK (runs >= 0),
    trend               TEXT NOT NULL CHECK (trend IN ({_in(HEALTH_TRENDS)})),
    details             TEXT NOT NULL DEFAULT '{{}}'
)
"""

_HEALTH_TRIGGERS = (
    """
    CREATE TRIGGER health_history_no_update BEFORE UPDATE ON health_history
    BEGIN SELECT RAISE(ABORT, 'health_history is append-only'); END
    """,
    """
    CREATE TRIGGER health_history_no_delete BEFORE DELETE ON health_history
    BEGIN SELECT RAISE(ABORT, 'health_history is append-only'); END
    """,
)


# -- migration 10: scheduled optimization jobs (seed D, DESIGN decision 8) -------------------
# One row per job a scheduler has seen, never deleted (a job whose package was removed keeps
# its history): when it is due next, who runs it now, and whether a run started and was not
# yet logged (run_open: a holder that dies leaves it set).  A lease is a holder and an expiry
# in unix seconds, like the queue's; due and run times are ISO-8601 UTC text.  Every run is
# appended to schedule_runs when it ends (the seed's OptimizationResult nodes) and never changed.

SCHEDULE_STATUSES: tuple[str, ...] = ("success", "error", "skipped")

_SCHEDULE_JOBS = """
CREATE TABLE schedule_jobs (
    name          TEXT PRIMARY KEY CHECK (name != ''),
    agent         TEXT NOT NULL,
    trigger       TEXT NOT NULL CHECK (trigger != ''),
    interval_s    REAL NOT NULL CHECK (interval_s >= 1),
    description   TEXT NOT NULL DEFAULT '',
    registered_ts TEXT NOT NULL,
    next_due      TEXT NOT NULL,
    lease_holder  TEXT,
    lease_expires REAL,
    last_started  TEXT,
    last_finished TEXT,
    run_open      INTEGER NOT NULL DEFAULT 0 CHECK (run_open IN (0, 1)),
    CHECK ((lease_holder IS NULL) = (lease_expires IS NULL))
) WITHOUT ROWID
"""

_SCHEDULE_RUNS = f"""
CREATE TABLE schedule_runs (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    task      TEXT NOT NULL REFERENCES schedule_jobs(name),
    agent     TEXT NOT NULL,
    status    TEXT NOT NULL CHECK (status IN ({_in(SCHEDULE_STATUSES)})),
    reason    TEXT,
    result    TEXT NOT NULL DEFAULT '{{}}',
    error     TEXT,
    traceback TEXT,
    started   TEXT NOT NULL,
    finished  TEXT NOT NULL,
    missed    INTEGER NOT NULL DEFAULT 0 CHECK (missed >= 0),
    manual    INTEGER NOT NULL DEFAULT 0 CHECK (manual IN (0, 1)),
    holder    TEXT,
    CHECK (status != 'skipped' OR reason IS NOT NULL),
    CHECK (status != 'error' OR error IS NOT NULL)
)
"""

_SCHEDULE_TRIGGERS = (
    """
    CREATE TRIGGER schedule_runs_no_update BEFORE UPDATE ON schedule_runs
    BEGIN SELECT RAISE(ABORT, 'schedule_runs is append-only'); END
    """,
    """
    CREATE TRIGGER schedule_runs_no_delete BEFORE DELETE ON schedule_runs
    BEGIN SELECT RAISE(ABORT, 'schedule_runs is append-only'); END
    """,
)


# -- migration 11: the ensemble's query cache (seed E) ---------------------------------------
# One row per cached question: the key is the sha256 of the normalised prompt, the sorted model
# set, the sampling parameters and the tier (kisystem.ensemble.cache); the chosen answer and the
# consensus figures (JSON) are what a repeated question gets back.  ``used_seq`` grows with every
# put and hit, so the least recently used rows go first when the cache is over its size limit,
# whatever the clock's resolution; times are ISO-8601 UTC text.

_ENSEMBLE_CACHE = """
CREATE TABLE ensemble_cache (
    key        TEXT PRIMARY KEY CHECK (length(key) = 64),
    tier       TEXT NOT NULL,
    models     TEXT NOT NULL DEFAULT '[]',
    answer     TEXT NOT NULL,
    figures    TEXT NOT NULL DEFAULT '{}',
    created_ts TEXT NOT NULL,
    used_ts    TEXT NOT NULL,
    used_seq   INTEGER NOT NULL,
    hits       INTEGER NOT NULL DEFAULT 0 CHECK (hits >= 0)
) WITHOUT ROWID
"""

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
    Migration(
        4,
        "durable task queue: tasks, legal transitions (enforced and logged), runs per attempt, answers",
        (
            _QUEUE_TASKS,
            _QUEUE_LEGAL,
            _QUEUE_TRANSITIONS,
            _QUEUE_RUNS,
            _QUEUE_ANSWERS,
            *_QUEUE_TRIGGERS,
            "CREATE INDEX idx_queue_claim ON queue_tasks(state, domain, model, priority, id)",
            "CREATE INDEX idx_queue_lease ON queue_tasks(state, lease_expires)",
            "CREATE INDEX idx_queue_transitions_task ON queue_transitions(task, id)",
            "CREATE INDEX idx_queue_runs_open ON queue_runs(task) WHERE open = 1",
        ),
        _fill_queue_legal,
    ),
    Migration(
        5,
        "runs.judge: who decided the result (a trusted judge, or the program itself)",
        (
            "ALTER TABLE runs ADD COLUMN judge TEXT"
            " CHECK (judge IS NULL OR judge IN ('calls', 'compare', 'self-reported'))",
        ),
    ),
    Migration(
        6,
        "runs.owner_*: the process writing a running row, so a killed one's runs close at the next start",
        (
            "ALTER TABLE runs ADD COLUMN owner_host TEXT",
            "ALTER TABLE runs ADD COLUMN owner_boot TEXT",
            "ALTER TABLE runs ADD COLUMN owner_pid INTEGER CHECK (owner_pid IS NULL OR owner_pid > 0)",
            "ALTER TABLE runs ADD COLUMN owner_started INTEGER",
            "CREATE INDEX idx_runs_running ON runs(owner_host) WHERE outcome = 'running'",
        ),
    ),
    Migration(
        7,
        "feedback loop: append-only feedback entries, per-(agent, type) aggregates, patterns, learnings",
        (
            _FEEDBACK_ENTRIES,
            _FEEDBACK_AGGREGATES,
            _FEEDBACK_PATTERNS,
            _FEEDBACK_LEARNINGS,
            *_FEEDBACK_TRIGGERS,
            "CREATE INDEX idx_feedback_agent_ts ON feedback_entries(agent_id, ts)",
            "CREATE INDEX idx_feedback_ts ON feedback_entries(ts)",
            "CREATE INDEX idx_feedback_operation ON feedback_entries(operation_id)",
            "CREATE INDEX idx_feedback_learnings_lookup ON feedback_learnings(agent_id, domain, impact)",
        ),
    ),
    Migration(
        8,
        "configuration versions (one active), optimization plans and their results, activation log",
        (
            _OPTIMIZATION_PLANS,
            _CONFIG_VERSIONS,
            _CONFIG_ACTIVATIONS,
            _OPTIMIZATION_RESULTS,
            "CREATE UNIQUE INDEX idx_config_versions_one_active ON config_versions(active) WHERE active = 1",
            "CREATE INDEX idx_optimization_plans_agent ON optimization_plans(agent, id)",
            "CREATE INDEX idx_optimization_results_plan ON optimization_results(plan, id)",
        ),
    ),
    Migration(
        9,
        "health history: every computed health score of an agent, append-only",
        (_HEALTH_HISTORY, *_HEALTH_TRIGGERS, "CREATE INDEX idx_health_history_agent ON health_history(agent, days, id)"),
    ),
    Migration(
        10,
        "scheduled optimization jobs: registry with due times and leases, append-only run log",
        (
            _SCHEDULE_JOBS,
            _SCHEDULE_RUNS,
            *_SCHEDULE_TRIGGERS,
            "CREATE INDEX idx_schedule_jobs_due ON schedule_jobs(next_due)",
            "CREATE INDEX idx_schedule_runs_task ON schedule_runs(task, id)",
            "CREATE INDEX idx_schedule_runs_started ON schedule_runs(started)",
        ),
    ),
    Migration(
        11,
        "the ensemble's query cache: chosen answer and consensus figures per question, size-limited",
        (_ENSEMBLE_CACHE, "CREATE INDEX idx_ensemble_cache_used ON ensemble_cache(used_seq)"),
    ),
    Migration(
        12,
        "runs by start time: the dashboard's newest-first, keyset-paginated run list and time windows",
        ("CREATE INDEX idx_runs_ts ON runs(ts, run_id, outcome)",),  # outcome: counts per window from the index
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
        if current_version(conn) < step.version:  # read first: a current database takes no write lock
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
