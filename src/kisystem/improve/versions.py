"""Configuration versions, plans and their results in the learning database (migration 8).

A version is an :class:`~kisystem.improve.overlay.Overlay` over the shipped configuration,
stored with its parent (the version active when it was made), creation time, reason and
the plan that made it.  At most one version is active (a unique partial index); none
active means the shipped configuration, shown as version 0.  Versions are never deleted:
one that failed validation stays stored as ``rolled_back``.  Every change of the active
version is logged in ``config_activations``.

:class:`OptimizationStore` owns every SQL statement over these tables.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kisystem.config import OptimizationConfig
from kisystem.errors import UsageError
from kisystem.improve.overlay import Configured, Overlay
from kisystem.improve.plans import Opportunity, Plan, Strategy, change_from_json, change_to_json
from kisystem.models.inventory import Inventory
from kisystem.store import db
from kisystem.store.base import GuardedStore
from kisystem.store.times import iso as _iso

log = logging.getLogger(__name__)

SHIPPED = 0  # the version number of the shipped configuration (no overlay)
VERSION_STATES: tuple[str, ...] = ("candidate", "kept", "rolled_back")

Clock = Callable[[], datetime]


class UnknownVersion(UsageError):
    """No configuration version has the given number."""


class UnknownPlan(UsageError):
    """No optimization plan has the given id."""


class PlanRefused(UsageError):
    """The plan's status does not allow what was asked (e.g. approve a plan already applied)."""


@dataclass(frozen=True)
class ConfigVersion:
    id: int
    parent: int | None
    created: datetime
    reason: str
    overlay: Overlay
    plan: int | None
    state: str  # candidate (being validated), kept, rolled_back
    active: bool


@dataclass(frozen=True)
class PlanResult:
    """What applying a plan came to: kept or rolled back, the figures before and after, and why."""

    plan: int
    version: int | None
    kept: bool
    metric: str
    before: Mapping[str, float] = field(default_factory=dict)
    after: Mapping[str, float] = field(default_factory=dict)
    detail: str = ""
    ts: datetime | None = None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OptimizationStore(GuardedStore):
    """All reads and writes of configuration versions, plans and results; one connection under a lock."""

    def __init__(self, conn: sqlite3.Connection, path: Path, clock: Clock = _utc_now) -> None:
        self.guarded = db.Guarded(conn, path, clock, db.LEARNING_DB)

    @classmethod
    def open(cls, path: Path, *, clock: Clock = _utc_now) -> OptimizationStore:
        """Open (creating if needed) the learning database at ``path``, schema brought up to date."""
        path = Path(path)
        return cls(db.open_migrated(path), path, clock)

    # -- versions -------------------------------------------------------------------------

    def versions(self) -> list[ConfigVersion]:
        return [_version(r) for r in self._rows("SELECT * FROM config_versions ORDER BY id")]

    def version(self, number: int) -> ConfigVersion:
        rows = self._rows("SELECT * FROM config_versions WHERE id = ?", (number,))
        if not rows:
            known = ", ".join(str(v.id) for v in self.versions()) or "none yet"
            raise UnknownVersion(f"no configuration version {number} (versions: {SHIPPED} = shipped, {known})")
        return _version(rows[0])

    def active(self) -> ConfigVersion | None:
        rows = self._rows("SELECT * FROM config_versions WHERE active = 1")
        return _version(rows[0]) if rows else None

    def add_version(self, overlay: Overlay, parent: int | None, reason: str, plan: int | None = None) -> ConfigVersion:
        """Store a new, inactive ``candidate`` version."""
        with self.guarded.writing("cannot store configuration version") as conn:
            cur = conn.execute(
                "INSERT INTO config_versions (parent, created_ts, reason, overlay, plan) VALUES (?, ?, ?, ?, ?)",
                (parent, _iso(self.guarded.clock()), reason, json.dumps(overlay.to_json()), plan))
            number = int(cur.lastrowid)  # type: ignore[arg-type]
        return self.version(number)

    def activate(self, number: int, reason: str = "activated") -> ConfigVersion:
        """Make version ``number`` the active one (and mark it kept)."""
        self.version(number)
        with self.guarded.writing("cannot activate configuration version") as conn:
            _switch(conn, number, reason, self.guarded.clock())
        return self.version(number)

    def rollback(self, number: int) -> ConfigVersion | None:
        """Restore version ``number`` (a kept one, or 0: the shipped configuration); the restored version."""
        if number != SHIPPED:
            target = self.version(number)
            if target.state != "kept":
                raise PlanRefused(f"configuration version {number} was never kept ({target.state}): "
                                  f"restore a kept version or {SHIPPED} (shipped)")
        with self.guarded.writing("cannot roll back configuration") as conn:
            _switch(conn, None if number == SHIPPED else number, f"rollback to {number}", self.guarded.clock())
        return self.active()

    # -- plans ----------------------------------------------------------------------------

    def add_plan(self, plan: Plan, status: str = "proposed") -> Plan:
        now = _iso(self.guarded.clock())
        opp = plan.opportunity
        with self.guarded.writing("cannot store optimization plan") as conn:
            cur = conn.execute(
                "INSERT INTO optimization_plans (created_ts, updated_ts, agent, domain, opportunity, severity,"
                " strategy, evidence, changes, effect, metric, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now, now, opp.agent, opp.domain, opp.type, str(opp.severity), str(plan.strategy),
                 json.dumps(dict(opp.evidence), default=str), json.dumps([change_to_json(c) for c in plan.changes]),
                 plan.effect, plan.metric, status))
            plan_id = int(cur.lastrowid)  # type: ignore[arg-type]
        return self.plan(plan_id)

    def plan(self, plan_id: int) -> Plan:
        rows = self._rows("SELECT * FROM optimization_plans WHERE id = ?", (plan_id,))
        if not rows:
            raise UnknownPlan(f"no optimization plan {plan_id}")
        return _plan(rows[0])

    def plans(self, agent: str | None = None) -> list[Plan]:
        where, params = ("WHERE agent = ?", (agent,)) if agent is not None else ("", ())
        return [_plan(r) for r in self._rows(f"SELECT * FROM optimization_plans {where} ORDER BY id", params)]

    def set_plan_status(self, plan_id: int, status: str, allowed_from: tuple[str, ...]) -> Plan:
        """Move a plan to ``status``; refused (one line) unless it is in one of ``allowed_from``."""
        with self.guarded.writing("cannot update optimization plan") as conn:
            _require_status(conn, plan_id, allowed_from)
            conn.execute("UPDATE optimization_plans SET status = ?, updated_ts = ? WHERE id = ?",
                         (status, _iso(self.guarded.clock()), plan_id))
        return self.plan(plan_id)

    def finish_plan(self, result: PlanResult, parent: int | None) -> PlanResult:
        """Keep (activate) or roll back the plan's version, set the plan's status and store the result, at once.

        A version is kept only while ``parent`` is still the active version: if another process
        changed the active configuration during validation, keeping would silently drop its change.
        """
        with self.guarded.writing("cannot record optimization result") as conn:
            if result.kept and _active_id(conn) != parent:
                result = PlanResult(result.plan, result.version, False, result.metric, result.before, result.after,
                                    "the active configuration changed during validation: not kept")
            now = self.guarded.clock()
            if result.version is not None:
                if result.kept:
                    _switch(conn, result.version, f"plan {result.plan} kept", now)
                else:
                    conn.execute("UPDATE config_versions SET state = 'rolled_back' WHERE id = ?", (result.version,))
            conn.execute("UPDATE optimization_plans SET status = ?, updated_ts = ? WHERE id = ?",
                         ("applied_kept" if result.kept else "rolled_back", _iso(now), result.plan))
            conn.execute(
                "INSERT INTO optimization_results (plan, version, ts, kept, metric, before, after, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (result.plan, result.version, _iso(now), int(result.kept), result.metric,
                 json.dumps(dict(result.before)), json.dumps(dict(result.after)), result.detail))
        return self.results(result.plan)[-1]

    def results(self, plan_id: int | None = None) -> list[PlanResult]:
        where, params = ("WHERE plan = ?", (plan_id,)) if plan_id is not None else ("", ())
        return [_result(r) for r in self._rows(f"SELECT * FROM optimization_results {where} ORDER BY id", params)]

    # -- plumbing -------------------------------------------------------------------------

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self.guarded.rows(sql, params, what="cannot read configuration versions")


def apply_active(config: OptimizationConfig, inventory: Inventory, store: OptimizationStore | None,
                 warn: Callable[[str], None] | None = None) -> Configured:
    """The configuration with the active version's overlay applied; unchanged without one.

    An overlay that no longer fits (it names a model or domain this inventory lacks, or a
    value out of range) is ignored with a warning: the shipped configuration still runs.
    """
    version = store.active() if store is not None else None
    if version is None:
        return config, inventory
    try:
        return version.overlay.apply(config, inventory)
    except UsageError as err:
        (warn or log.warning)(f"configuration version {version.id} ignored: {err}")
        return config, inventory


def _switch(conn: sqlite3.Connection, number: int | None, reason: str, now: datetime) -> None:
    """Make ``number`` (None: the shipped configuration) active and log it; inside a write transaction."""
    conn.execute("UPDATE config_versions SET active = 0 WHERE active = 1")
    if number is not None:
        conn.execute("UPDATE config_versions SET active = 1, state = 'kept' WHERE id = ?", (number,))
    conn.execute("INSERT INTO config_activations (ts, version, reason) VALUES (?, ?, ?)",
                 (_iso(now), number, reason))


def _active_id(conn: sqlite3.Connection) -> int | None:
    row = conn.execute("SELECT id FROM config_versions WHERE active = 1").fetchone()
    return int(row[0]) if row else None


def _require_status(conn: sqlite3.Connection, plan_id: int, allowed: tuple[str, ...]) -> None:
    row = conn.execute("SELECT status FROM optimization_plans WHERE id = ?", (plan_id,)).fetchone()
    if row is None:
        raise UnknownPlan(f"no optimization plan {plan_id}")
    if row[0] not in allowed:
        raise PlanRefused(f"plan {plan_id} is {row[0]}, not {' or '.join(allowed)}")


def _version(row: sqlite3.Row) -> ConfigVersion:
    return ConfigVersion(row["id"], row["parent"], datetime.fromisoformat(row["created_ts"]), row["reason"],
                         Overlay.from_json(json.loads(row["overlay"])), row["plan"], row["state"], bool(row["active"]))


def _plan(row: sqlite3.Row) -> Plan:
    opportunity = Opportunity(row["opportunity"], row["severity"], row["agent"], row["domain"],
                              json.loads(row["evidence"]))
    changes = tuple(change_from_json(c) for c in json.loads(row["changes"]))
    return Plan(opportunity, Strategy(row["strategy"]), changes, row["effect"], row["metric"], row["id"],
                row["status"], datetime.fromisoformat(row["created_ts"]), datetime.fromisoformat(row["updated_ts"]))


def _result(row: sqlite3.Row) -> PlanResult:
    return PlanResult(row["plan"], row["version"], bool(row["kept"]), row["metric"], json.loads(row["before"]),
                      json.loads(row["after"]), row["detail"], datetime.fromisoformat(row["ts"]))

