"""What the Queue page shows: tasks per state, each with its ETA, PriorityScore and PriorityEff.

The figures come from the queue's own :class:`~kisystem.queue.ordering.Ordering`, built exactly as
``kisystem queue status`` builds it (:func:`~kisystem.queue.ordering.learned_ordering` over the
learning database), so the page and the command never disagree.  The ordering needs a
:class:`~kisystem.store.learning.LearningStore`: :func:`read_only_store` opens one on its own
read-only connection for the length of one request (the dashboard's shared connection has its own
lock).  The queued table lists tasks in the order claims would take them now, computed group by
group as :meth:`Ordering.queue_order` does, so a queue of 100k tasks reads only the rows shown.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from kisystem.config import OptimizationConfig, config_path_for, load_config
from kisystem.errors import KisystemError
from kisystem.models.inventory import Inventory, load_inventory
from kisystem.paths import Paths
from kisystem.queue.ordering import EtaEstimator, Ordering, learned_ordering
from kisystem.store import db as store_db
from kisystem.store.learning import Clock, LearningStore, utc_now
from kisystem.store.migrations import QUEUE_STATES
from kisystem.store.queue import ACTIVE_STATES, RETRYABLE_STATES, Candidate
from kisystem.web.db import DashboardDb

SHOWN_PER_STATE = 50
RANKED_GROUPS = 200  # past this many (domain, model, priority) groups, sort instead of Ordering.ranked
CANCELLABLE = ("queued", *ACTIVE_STATES)
RETRYABLE = RETRYABLE_STATES

_COLUMNS = ("id, task, domain, model, priority, state, attempts, max_attempts, lease_holder, lease_expires,"
            " run_id, outcome, score, note, updated_ts")  # fmt: skip
_GROUP_HEADS = ("SELECT MIN(id) AS id, domain, model, priority, COUNT(*) AS waiting FROM queue_tasks"
                " WHERE state = 'queued' GROUP BY domain, model, priority")  # the claim's candidates
_GROUP = (f"SELECT {_COLUMNS} FROM queue_tasks WHERE state = 'queued' AND domain = ? AND model IS ?"
          " AND priority IS ? ORDER BY id LIMIT ?")  # fmt: skip


@dataclass(frozen=True)
class OrderingSettings:
    """The configuration and inventory the ordering reads (start models, meta-supervisor weights).

    ``problem`` says why defaults stand in for the user's files, when they do.
    """

    config: OptimizationConfig
    inventory: Inventory | None
    problem: str | None = None

    @classmethod
    def load(cls, paths: Paths | None = None) -> OrderingSettings:
        """As the CLI loads them (``KISYSTEM_HOME``, ``KISYSTEM_CONFIG``); a bad file falls back to defaults."""
        paths = paths or Paths.resolve()
        try:
            config = load_config(config_path_for(paths)).config
        except KisystemError as err:
            return cls(OptimizationConfig(), None, f"configuration not loaded, defaults used: {err}")
        try:
            file = Path(config.inventory_file).expanduser() if config.inventory_file else None
            return cls(config, load_inventory(config.model_profile, file))
        except KisystemError as err:
            return cls(config, None, f"model inventory not loaded, no start models known: {err}")


@dataclass(frozen=True)
class TaskRow:
    """One task as the page shows it; ``eta_s`` and the priorities are None without an ordering."""

    id: int
    task: str
    domain: str
    model: str | None  # the task's own start model, if it names one
    state: str
    attempts: int
    max_attempts: int
    lease_holder: str | None
    lease_left_s: float | None  # seconds until the lease lapses (negative: lapsed)
    outcome: str | None
    score: float | None
    note: str | None
    updated_ts: str
    eta_model: str | None = None  # the model the ETA is for
    eta_s: float | None = None
    eta_runs: int = 0  # finished runs behind a learned ETA (0: the static table)
    priority_score: float | None = None
    priority_eff: float | None = None
    position: int | None = None  # place in the claim order (queued tasks)
    runs: tuple[str, ...] = ()

    @property
    def can_cancel(self) -> bool:
        return self.state in CANCELLABLE

    @property
    def can_retry(self) -> bool:
        return self.state in RETRYABLE


@dataclass(frozen=True)
class StateTable:
    state: str
    count: int
    rows: list[TaskRow]


@dataclass(frozen=True)
class QueuePage:
    counts: dict[str, int]
    tables: list[StateTable] = field(default_factory=list)
    ordering_problem: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())


@contextmanager
def read_only_store(path: Path, clock: Clock = utc_now) -> Iterator[LearningStore]:
    """A LearningStore on its own read-only connection (never migrates, never writes), closed on exit."""
    store = LearningStore(store_db.connect_read_only(path), path, clock)
    try:
        yield store
    finally:
        store.close()


def ordering_for(store: LearningStore, settings: OrderingSettings) -> Ordering:
    """The ordering ``kisystem queue status`` uses, no model counted as loaded (the dashboard probes none)."""
    return learned_ordering(store, settings.config, settings.inventory)


def queue_page(db: DashboardDb, counts: dict[str, int], ordering: Ordering | None, now: datetime,
               shown: int = SHOWN_PER_STATE, ordering_problem: str | None = None) -> QueuePage:  # fmt: skip
    """A table per state that has tasks, at most ``shown`` rows each."""
    tables = []
    for state in QUEUE_STATES:
        if not counts.get(state):
            continue
        rows = _queued(db, ordering, shown) if state == "queued" else _in_state(db, state, shown)
        runs = _runs_of(db, [r["id"] for r in rows])
        tasks = [_row(r, ordering, now, runs.get(r["id"], ()), i + 1 if state == "queued" else None)
                 for i, r in enumerate(rows)]  # fmt: skip
        tables.append(StateTable(state, counts[state], tasks))
    return QueuePage(counts, tables, ordering_problem)


def task_name(db: DashboardDb, task_id: int) -> str | None:
    return db.value("SELECT task FROM queue_tasks WHERE id = ?", (task_id,)) if db.has("queue_tasks") else None


def _queued(db: DashboardDb, ordering: Ordering | None, shown: int) -> list[sqlite3.Row]:
    """Queued rows in claim order: rank the groups' oldest tasks, then drain each group (as queue_order)."""
    heads = [Candidate(r["id"], r["domain"], r["model"], r["priority"], r["waiting"]) for r in db.rows(_GROUP_HEADS)]
    if ordering is None:
        heads.sort(key=lambda c: c.id)
    elif len(heads) <= RANKED_GROUPS:
        heads = ordering.ranked(heads)
    else:  # with no model loaded, ranked() is this sort, in quadratic time
        heads.sort(key=lambda c: (-ordering.eff(c), c.id))
    rows: list[sqlite3.Row] = []
    for head in heads:
        if len(rows) >= shown:
            break
        rows.extend(db.rows(_GROUP, (head.domain, head.model, head.priority, shown - len(rows))))
    return rows


def _in_state(db: DashboardDb, state: str, shown: int) -> list[sqlite3.Row]:
    order = "id" if state in ACTIVE_STATES else "id DESC"  # active: oldest claim first; finished: newest first
    return db.rows(f"SELECT {_COLUMNS} FROM queue_tasks WHERE state = ? ORDER BY {order} LIMIT ?", (state, shown))


def _runs_of(db: DashboardDb, task_ids: list[int]) -> dict[int, tuple[str, ...]]:
    """The learning run of each attempt of these tasks, oldest first."""
    if not task_ids:
        return {}
    marks = ", ".join("?" * len(task_ids))
    found: dict[int, list[str]] = {}
    for r in db.rows(f"SELECT task, run_id FROM queue_runs WHERE task IN ({marks}) ORDER BY rowid", tuple(task_ids)):
        found.setdefault(r["task"], []).append(r["run_id"])
    return {task: tuple(runs) for task, runs in found.items()}


def _row(r: sqlite3.Row, ordering: Ordering | None, now: datetime, runs: tuple[str, ...],
         position: int | None) -> TaskRow:
    left = r["lease_expires"] - now.timestamp() if r["lease_expires"] is not None else None
    row = TaskRow(r["id"], r["task"], r["domain"], r["model"], r["state"], r["attempts"], r["max_attempts"],
                  r["lease_holder"], left, r["outcome"], r["score"], r["note"], r["updated_ts"],
                  position=position, runs=runs or ((r["run_id"],) if r["run_id"] else ()))  # fmt: skip
    if ordering is None:
        return row
    c = Candidate(r["id"], r["domain"], r["model"], r["priority"], 1)
    model = ordering.model(c)
    learned = ordering.eta.estimate(model, c.domain).runs if isinstance(ordering.eta, EtaEstimator) else 0
    return replace(row, eta_model=model or None, eta_s=ordering.eta(model, c.domain), eta_runs=learned,
                    priority_score=ordering.priority(c), priority_eff=ordering.eff(c))
