"""The dashboard's view of the learning database: one read-only connection, shared under a lock.

The dashboard never writes: the file is opened ``mode=ro`` (:func:`kisystem.store.db.connect_read_only`)
and ``query_only`` is set on top, so no page or endpoint can change what the loop records.  The
connection runs in autocommit mode, so every read sees the newest committed state (WAL: readers
never block the loop's writers).  Tables that a database of an older schema lacks (the queue, health
history) read as absent rather than failing: see :meth:`DashboardDb.has`.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

from kisystem.errors import UsageError
from kisystem.paths import DB_ENV
from kisystem.store import db


class DashboardDb:
    """Reads of the learning database, serialised on one connection (route handlers run in threads)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.lock = threading.Lock()

    @classmethod
    def open(cls, path: Path) -> DashboardDb:
        """Open an existing database read-only; a missing one is a usage error (one line)."""
        path = Path(path)
        if not path.is_file():
            raise UsageError(f"no learning database at {path}: run a task first (kisystem run), "
                             f"or point --db / {DB_ENV} at one")
        conn = db.connect_read_only(path)
        conn.execute("PRAGMA query_only = ON")
        return cls(conn, path)

    def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self.lock, db.translate(f"cannot read {db.LEARNING_DB} {self.path}"):
            return self.conn.execute(sql, params).fetchall()

    def value(self, sql: str, params: tuple[Any, ...] = ()) -> Any:
        """The first column of the first row (None when there is none)."""
        found = self.rows(sql, params)
        return found[0][0] if found else None

    def has(self, table: str) -> bool:
        """Whether ``table`` exists (read each time: the loop may migrate the file while we serve it)."""
        return bool(self.value("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)))

    def schema_version(self) -> int:
        return int(self.value("PRAGMA user_version") or 0)

    def close(self) -> None:
        with self.lock:
            self.conn.close()

