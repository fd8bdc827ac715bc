"""What the stores over a :class:`~kisystem.store.db.Guarded` connection share.

The learning, queue and configuration-version stores each open one connection of the same
file and close it the same way (:class:`GuardedStore`), and several reads filter on a few
optional columns (:func:`where`); these parts are written once here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

from kisystem.store import db


class GuardedStore:
    """A store over one guarded connection: its file, ``close`` and use in a ``with`` block."""

    guarded: db.Guarded

    @property
    def path(self) -> Path:
        return self.guarded.path

    def close(self) -> None:
        self.guarded.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def where(*conditions: tuple[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """``WHERE c1 AND c2 ...`` of the conditions whose value is not None ("" when none is), and its parameters.

    A condition is (SQL with one ``?``, value); a tuple value fills as many ``?`` (``type IN (?, ?)``).
    """
    clauses: list[str] = []
    params: list[Any] = []
    for clause, value in conditions:
        if value is not None:
            clauses.append(clause)
            params.extend(value if isinstance(value, tuple) else (value,))
    return (f"WHERE {' AND '.join(clauses)}" if clauses else "", tuple(params))
