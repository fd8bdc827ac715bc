"""The SQLite connection: pragmas, explicit write transactions, error translation.

Connections run with ``isolation_level=None`` so that sqlite3 never opens or commits a
transaction behind our back; every write goes through :func:`write`, which takes the
database write lock up front (``BEGIN IMMEDIATE``).  With WAL and a busy timeout this
lets several processes write the same file: a writer waits for the lock instead of
failing, and readers never block writers.

A file kisystem cannot write (a read-only file, a read-only file system) opens read-only:
reading commands work on it, and the first write fails with one line naming the file.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from kisystem.errors import DatabaseLocked, DatabaseReadOnly, DatabaseUnavailable, StoreError, describe_os_error

BUSY_TIMEOUT_MS = 5000
LEARNING_DB = "learning database"
_CANNOT_WRITE = (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN)


def connect(path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS, what: str = LEARNING_DB) -> sqlite3.Connection:
    """Open ``path`` in WAL mode with foreign keys on and a busy timeout (read-only if it cannot be written)."""
    path = Path(path)
    try:
        return _connect_writable(path, busy_timeout_ms, what)
    except StoreError as err:
        if not (path.is_file() and _code(err.__cause__) in _CANNOT_WRITE):
            raise
        try:
            return connect_read_only(path, busy_timeout_ms=busy_timeout_ms, what=what)
        except StoreError:
            raise err from err.__cause__  # why it could not be opened for writing says more


def _connect_writable(path: Path, busy_timeout_ms: int, what: str) -> sqlite3.Connection:
    with translate(f"cannot open {what} {path}{_why_not_openable(path)}"):
        conn = sqlite3.connect(
            path, timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
    try:
        with translate(f"cannot configure {what} {path}"):
            _retry_busy(lambda: _configure(conn, busy_timeout_ms), busy_timeout_ms / 1000)
    except BaseException:
        conn.close()
        raise
    return conn


def connect_read_only(path: Path, *, busy_timeout_ms: int = BUSY_TIMEOUT_MS,
                      what: str = LEARNING_DB) -> sqlite3.Connection:
    """Open an existing ``path`` for reading only.

    A WAL database on a read-only file system cannot create its shared-memory file, so
    plain ``mode=ro`` fails there; ``immutable=1`` then reads it without locks, which is
    right for a file nothing can write.
    """
    uri = Path(path).resolve().as_uri()
    last: sqlite3.Error | None = None
    for query in ("mode=ro", "mode=ro&immutable=1"):
        conn = sqlite3.connect(f"{uri}?{query}", uri=True, timeout=busy_timeout_ms / 1000,
                               isolation_level=None, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA user_version").fetchone()  # the first real read of the file
            return conn
        except sqlite3.Error as exc:
            conn.close()
            last = exc
            if _code(exc) != sqlite3.SQLITE_CANTOPEN:
                break
    raise StoreError(f"cannot open {what} {path} read-only: {last}") from last


def _why_not_openable(path: Path) -> str:
    """Why SQLite may fail to open ``path``, for its message: SQLite itself only says 'unable to open'."""
    if not path.exists() and not os.access(path.parent, os.W_OK):
        return f" (cannot create it: its folder {path.parent} is not writable)"
    return ""


def _code(exc: BaseException | None) -> int:
    """The primary SQLite result code of ``exc`` (0 when it is not an SQLite error)."""
    return (getattr(exc, "sqlite_errorcode", 0) or 0) & 0xFF


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
    return _code(exc) == sqlite3.SQLITE_BUSY


@contextmanager
def write(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction: commit on success, roll back on any exception.

    A lock another process held past the busy timeout, or a file that cannot be written,
    raises :class:`DatabaseLocked` or :class:`DatabaseReadOnly` naming the file.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            # Some errors (disk full, I/O) already rolled back inside SQLite.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    except sqlite3.OperationalError as exc:
        unavailable = _unavailable(conn, exc)
        if unavailable is None:
            raise
        raise unavailable from exc


def _unavailable(conn: sqlite3.Connection, exc: sqlite3.OperationalError) -> DatabaseUnavailable | None:
    code = _code(exc)
    if code == sqlite3.SQLITE_BUSY:
        waited_s = conn.execute("PRAGMA busy_timeout").fetchone()[0] / 1000
        return DatabaseLocked(f"{LEARNING_DB} {database_file(conn)} is locked by another process "
                              f"(still held after waiting {waited_s:g} s); try again when that process is done")
    if code in _CANNOT_WRITE:
        return DatabaseReadOnly(f"{LEARNING_DB} {database_file(conn)} is read-only (a read-only file or file "
                                "system): reading commands work on it, writing ones need a writable file (--db)")
    return None


def database_file(conn: sqlite3.Connection) -> str:
    """The file behind ``conn``'s main database."""
    return next(row[2] for row in conn.execute("PRAGMA database_list") if row[1] == "main")


@contextmanager
def translate(what: str) -> Iterator[None]:
    """Turn sqlite3 errors into :class:`StoreError` prefixed with ``what``."""
    try:
        yield
    except DatabaseUnavailable as err:
        raise err.in_context(what) from err.__cause__
    except sqlite3.Error as exc:
        raise StoreError(f"{what}: {exc}") from exc


def open_migrated(path: Path, what: str = LEARNING_DB) -> sqlite3.Connection:
    """Connect to ``path`` (creating its folder) with the schema brought up to date.

    A database at the latest version takes no write lock here, so this works while another
    process writes, and on a read-only file."""
    from kisystem.store.migrations import migrate  # migrations import this module

    path = Path(path)
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise StoreError(f"{what} {path} is {kind}: give the path of an SQLite file (--db / KISYSTEM_DB)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create directory for {what} {path}: {describe_os_error(exc)}") from exc
    conn = connect(path, what=what)
    try:
        with translate(f"cannot migrate {what} {path}"):
            migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


class Guarded:
    """One connection under a lock, shared by the stores of one database file.

    Every store of the learning database (runs, queue, feedback, health, versions, schedule)
    reads and writes through one of these, so they share its lock and clock instead of
    each keeping a copy of the same three lines; a store opened on another store's
    connection (``FeedbackLoop(store)``) takes that store's ``guarded``.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Callable[[], datetime], what: str) -> None:
        self.conn = conn
        self.path = path
        self.clock = clock
        self.what = what
        self.lock = threading.RLock()

    @contextmanager
    def writing(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock; sqlite3 errors become StoreError prefixed with ``what``."""
        with self.lock, translate(what), write(self.conn) as conn:
            yield conn

    def rows(self, sql: str, params: tuple[Any, ...] = (), *, what: str | None = None) -> list[sqlite3.Row]:
        """The rows of one read, under the lock."""
        with self.lock, translate(what or f"cannot read the {self.what}"):
            return self.conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self.lock:
            self.conn.close()
