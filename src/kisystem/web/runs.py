"""The Runs page's list: search and keyset pagination over ``runs``.

Newest first by (ts, run_id).  A page is found by where the previous one ended (a cursor: the
last row's ts and run_id), never by OFFSET, so page 2,000 costs what page 1 does: a search of the
index on ``runs(ts, run_id)`` (migration 12) for the cursor and the next rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kisystem.errors import UsageError
from kisystem.store.base import where
from kisystem.web.db import DashboardDb

PAGE_SIZE = 50
COUNT_CAP = 10_000  # a search counts its matches up to here: "10,000+" is as useful and stays fast

_COLUMNS = ("run_id, task, domain, model, iter, score_final, outcome, ts, ended_ts, wall_s,"
            " tokens_prompt + tokens_completion AS tokens, error_type")  # fmt: skip


@dataclass(frozen=True)
class Cursor:
    """A position in the newest-first order: a run's start time and id."""

    ts: str
    run_id: str

    def token(self) -> str:
        return f"{self.ts}|{self.run_id}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        ts, sep, run_id = text.partition("|")
        if not (sep and ts and run_id):
            raise UsageError(f"bad page cursor {text!r}: expected TS|RUN_ID")
        return cls(ts, run_id)


@dataclass(frozen=True)
class RunFilter:
    """What the list is narrowed to: ``q`` matches part of the task, domain or model; the rest are exact."""

    q: str = ""
    domain: str = ""
    model: str = ""
    outcome: str = ""

    def conditions(self) -> list[tuple[str, Any]]:
        pattern = f"%{_escape_like(self.q)}%" if self.q else None
        like = "(task LIKE ? ESCAPE '\\' OR domain LIKE ? ESCAPE '\\' OR model LIKE ? ESCAPE '\\')"
        return [(like, (pattern,) * 3 if pattern else None), ("domain = ?", self.domain or None),
                ("model = ?", self.model or None), ("outcome = ?", self.outcome or None)]

    @property
    def active(self) -> bool:
        return any((self.q, self.domain, self.model, self.outcome))

    def query(self) -> dict[str, str]:
        """The non-empty fields, for links that keep the search."""
        return {k: v for k, v in vars(self).items() if v}


@dataclass(frozen=True)
class RunsPage:
    rows: list[dict[str, Any]]
    older: Cursor | None  # where the next (older) page starts; None on the last page
    newer: Cursor | None  # where the previous (newer) page ends; None on the first page
    matches: int
    capped: bool  # more than COUNT_CAP matches


def runs_page(db: DashboardDb, flt: RunFilter, before: Cursor | None = None, after: Cursor | None = None,
              size: int = PAGE_SIZE) -> RunsPage:
    """One page of runs, newest first: the ``size`` runs older than ``before``, or newer than ``after``."""
    if after is not None:
        rows = _select(db, flt, ("(ts, run_id) > (?, ?)", (after.ts, after.run_id)), "ASC", size + 1)
        more_newer, rows = len(rows) > size, rows[:size][::-1]
        older = _cursor(rows[-1]) if rows else None
        newer = _cursor(rows[0]) if rows and more_newer else None
    else:
        keyset = ("(ts, run_id) < (?, ?)", (before.ts, before.run_id) if before else None)
        rows = _select(db, flt, keyset, "DESC", size + 1)
        more_older, rows = len(rows) > size, rows[:size]
        older = _cursor(rows[-1]) if rows and more_older else None
        newer = _cursor(rows[0]) if rows and before is not None else None
    whole = before is None and after is None and older is None  # this page holds every match: no count needed
    matches, capped = (len(rows), False) if whole else _count(db, flt)
    return RunsPage(rows, older, newer, matches, capped)


def filter_options(db: DashboardDb) -> dict[str, list[str]]:
    """Domains and models to choose from: the aggregates' few rows plus those of runs in flight.

    Two reads merged here: as one UNION ... ORDER BY, SQLite walks a whole index of ``runs`` to merge.
    """
    if not db.has("domain_model_agg"):  # a schema before migration 3: scan the indexes instead
        return {c: _column(db, f"SELECT DISTINCT {c} FROM runs") for c in ("domain", "model")}
    return {c: sorted(set(_column(db, f"SELECT {c} FROM domain_model_agg"))
                      | set(_column(db, f"SELECT {c} FROM runs WHERE outcome = 'running'")))
            for c in ("domain", "model")}  # fmt: skip


def _select(db: DashboardDb, flt: RunFilter, keyset: tuple[str, Any], order: str, limit: int) -> list[dict]:
    clause, params = where(*flt.conditions(), keyset)
    sql = f"SELECT {_COLUMNS} FROM runs {clause} ORDER BY ts {order}, run_id {order} LIMIT ?"
    return [dict(r) for r in db.rows(sql, (*params, limit))]


def _count(db: DashboardDb, flt: RunFilter) -> tuple[int, bool]:
    if not flt.active:
        return int(db.value("SELECT COUNT(*) FROM runs")), False
    clause, params = where(*flt.conditions())
    n = int(db.value(f"SELECT COUNT(*) FROM (SELECT 1 FROM runs {clause} LIMIT ?)", (*params, COUNT_CAP + 1)))
    return min(n, COUNT_CAP), n > COUNT_CAP


def _cursor(row: dict[str, Any]) -> Cursor:
    return Cursor(row["ts"], row["run_id"])


def _column(db: DashboardDb, sql: str) -> list[str]:
    return sorted(r[0] for r in db.rows(sql))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
