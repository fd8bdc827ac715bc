"""The parts the stores share: the optional-filter WHERE clause and closing through ``guarded``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kisystem.errors import StoreError
from kisystem.store.base import where
from kisystem.store.learning import LearningStore


def test_where_keeps_the_conditions_that_have_a_value_in_order() -> None:
    assert where(("a = ?", 1), ("b = ?", None), ("c >= ?", "x")) == ("WHERE a = ? AND c >= ?", (1, "x"))


def test_where_fills_a_tuple_into_as_many_marks() -> None:
    assert where(("type IN (?, ?)", ("s", "f")), ("agent = ?", "m")) == ("WHERE type IN (?, ?) AND agent = ?",
                                                                          ("s", "f", "m"))


def test_where_without_a_value_is_no_clause() -> None:
    assert where(("a = ?", None)) == ("", ())
    assert where() == ("", ())


def test_a_store_reads_through_its_guarded_connection_and_closes_it(tmp_path: Path) -> None:
    with LearningStore.open(tmp_path / "l.db") as store:
        assert store.path == tmp_path / "l.db" and store.guarded.path == store.path
        assert [tuple(r) for r in store.query("SELECT ? + 1", (41,))] == [(42,)]
        with pytest.raises(StoreError, match="^cannot read learning database: no such table: missing"):
            store.query("SELECT * FROM missing")
    with pytest.raises(sqlite3.ProgrammingError):
        store.guarded.conn.execute("SELECT 1")
