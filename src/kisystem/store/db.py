"""The SQLite connection: pragmas, explicit write transactions, error translation.

Connections run with ``isolation_level=None`` so that sqlite3 never opens or commits a
transaction behind our back; every write goes through :func:`write`, which takes the
database write lock up front (``BEGIN IMMEDIATE``).  With WAL and a busy timeout this
lets several processes write the same file: a writer waits for the lock instead of
failing, and readers never block writers.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from kisystem.errors import StoreError

BUSY_TIMEOUT_MS = 5000


def connect(path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with foreign keys on and a busy timeout."""
    with translate(f"cannot open learning database {path}"):
        conn = sqlite3.connect(
            path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
    try:
        with translate(f"cannot configure learning database {path}"):
            _retry_busy(lambda: _configure(conn, busy_timeout_ms), busy_timeout_ms / 1000)
    except BaseException:
        conn.close()
        raise
    return conn


def _configure(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys = ON")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        # e.g. some network file systems: concurrent writers would not be safe.
        raise StoreError(f"learning database cannot use WAL journal mode (got {mode!r})")


def _retry_busy(step: Callable[[], None], timeout_s: float) -> None:
    # Two connections switching a fresh file to WAL at once can deadlock on its locks;
    # SQLite then fails one with SQLITE_BUSY at once instead of calling its busy handler.
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        try:
            return step()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return (getattr(exc, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: commit on success, roll back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # Some errors (disk full, I/O) already rolled back inside SQLite.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def translate(what: str) -> Iterator[None]:
    """Turn sqlite3 errors into :class:`StoreError` prefixed with ``what``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{what}: {exc}") from exc


def open_migrated(path: Path, what: str = "database") -> sqlite3.Connection:
    """Connect to ``path`` (creating its folder) with the schema brought up to date."""
    from kisystem.store.migrations import migrate  # migrations import this module

    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise StoreError(f"{what} {path} is {kind}: give the path of an SQLite file (--db / KISYSTEM_DB)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create directory for {what} {path}: {exc}") from exc
    conn = connect(path)
    try:
        with translate(f"cannot migrate {what} {path}"):
            migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn
