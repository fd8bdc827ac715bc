"""The Improvement and Alerts pages, and the approve / reject buttons of plans awaiting approval.

Pages read through the dashboard's read-only connection (:mod:`kisystem.web.improvement`,
:mod:`kisystem.web.alerts`).  Approving and rejecting are the only writes: each opens its own
short-lived :class:`~kisystem.improve.versions.OptimizationStore`, decides through
:func:`kisystem.improve.auto.approve` / :func:`~kisystem.improve.auto.reject` as
``kisystem optimize approve | reject`` do, and redirects back (303) with what came of it as a
one-time message (a cookie the next view of the page shows and clears).  The Guard has checked
the CSRF token before a handler runs: a POST without it never gets here.

Rejecting needs only the database.  Approving applies the plan to a new configuration version and
keeps it only if a replay of recorded outcomes shows it better, so it also needs the shipped
configuration and inventory, and where the recorded outcomes are: ``kisystem serve`` hands them in
(:func:`configure_approval`, kept as ``app.state.approval``).  A dashboard made without them
(``create_app`` alone) shows approving as unavailable and says why.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import quote, unquote

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from kisystem.config import OptimizationConfig
from kisystem.errors import KisystemError, UsageError
from kisystem.improve.auto import PlanOutcome, Validator, approve, reject
from kisystem.improve.versions import (
    OptimizationStore,
    PlanRefused,
    UnknownPlan,
    apply_active,
)
from kisystem.models.inventory import Inventory
from kisystem.web import alerts, improvement
from kisystem.web.routes import _dash, _render

log = logging.getLogger(__name__)

PAGE = "/improvement"
FLASH_COOKIE = "kisystem_flash"
FLASH_MAX_AGE_S = 60
MAX_PLAN_ID = 2**63 - 1  # SQLite's largest integer: a longer id names no plan
HISTORY_DAYS = 90  # without a recorded outcome table, the replay runs on this much of the database's history
APPROVAL_OFF = ("approving needs the configuration and model inventory that `kisystem serve` loads, and this "
                "dashboard was started without them: use `kisystem optimize approve ID` (rejecting works here)")

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class Approval:
    """What approving a plan needs besides the database: the shipped configuration and inventory (the active
    version's overlay is applied on top, as the CLI does), and the home whose ``bench/`` holds recorded outcomes."""

    config: OptimizationConfig
    inventory: Inventory
    home: Path

    def approve(self, db_path: Path, plan_id: int, clock: Clock) -> PlanOutcome:
        """Apply the plan copy-on-write, validated as the improvement-proposals job validates (kept only if better)."""
        with OptimizationStore.open(db_path, clock=clock) as store:
            plan = store.plan(plan_id)
            if plan.status != "awaiting_approval":  # said before any replay is prepared
                raise PlanRefused(f"plan {plan_id} is {plan.status}, not awaiting_approval")
            validator = self._replay(store, db_path, clock) if plan.replayable else None
            return approve(store, plan_id, self.config, self.inventory, validator, warn=log.warning)

    def _replay(self, store: OptimizationStore, db_path: Path, clock: Clock) -> Validator:
        """The routing replay: of the newest table `kisystem bench routing` recorded, else of the database's runs."""
        # Imported here: the replay pulls in the loop and the benchmark, which no page view needs.
        from kisystem.improve.validate import ReplayValidator
        from kisystem.schedule.jobs.common import bench_table, history_table
        from kisystem.store.learning import LearningStore

        recorded = bench_table(self.home)
        if recorded is not None:
            return ReplayValidator(recorded[0])
        _, inventory = apply_active(self.config, self.inventory, store, log.warning)
        with LearningStore.open(db_path, clock=clock) as learning:
            history = history_table(learning, inventory, clock() - timedelta(days=HISTORY_DAYS))
        if not history.table.tasks:
            raise UsageError(f"no recorded outcomes to validate the plan on (no `kisystem bench routing` table in "
                             f"{self.home / 'bench'}, no finished runs in the last {HISTORY_DAYS} days)")
        return ReplayValidator(history.table)


def configure_approval(app: Starlette, *, config: OptimizationConfig | None, inventory: Inventory | None,
                       home: Path | None) -> None:
    """Turn approving on with what ``kisystem serve`` loaded; without all three it stays off (the page says so)."""
    ready = config is not None and inventory is not None and home is not None
    app.state.approval = Approval(config, inventory, home) if ready else None  # type: ignore[arg-type]


# -- the Improvement page ----------------------------------------------------------------------


def improvement_page(request: Request) -> Response:
    dash = _dash(request)
    flash = _flash(request)
    context = {
        "awaiting": improvement.awaiting_approval(dash.db), "plans": improvement.recent_plans(dash.db),
        "versions": improvement.versions(dash.db), "opportunities": improvement.opportunities(dash.db),
        "patterns": improvement.patterns(dash.db), "learnings": improvement.learnings(dash.db),
        "jobs": improvement.jobs(dash.db), "job_runs": improvement.job_runs(dash.db), "now": dash.clock(),
        "can_approve": _approval(request) is not None, "approval_off": APPROVAL_OFF, "flash": flash,
        "iso": improvement.iso_of, "due_in_s": improvement.due_in_s, "history_days": HISTORY_DAYS,
    }  # fmt: skip
    response = _render(request, "improvement.html", context)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, path=PAGE)
    return response


def approve_plan(request: Request) -> Response:
    dash, plan_id = _dash(request), request.path_params["plan_id"]
    approval = _approval(request)
    try:
        if approval is None:
            raise UsageError(f"plan {plan_id} not approved: {APPROVAL_OFF}")
        _require_plan_table(request, plan_id)
        outcome = approval.approve(dash.db.path, plan_id, dash.clock)
    except KisystemError as err:
        return _back(str(err), ok=False)
    result = outcome.result
    if result is not None and result.kept:
        return _back(f"plan {plan_id} approved and kept: configuration version {result.version} is active "
                     f"({result.detail})", ok=True)
    detail = result.detail if result is not None else outcome.plan.status
    return _back(f"plan {plan_id} approved, then rolled back: {detail}", ok=True)  # decided: not an error


def reject_plan(request: Request) -> Response:
    dash, plan_id = _dash(request), request.path_params["plan_id"]
    try:
        _require_plan_table(request, plan_id)
        with OptimizationStore.open(dash.db.path, clock=dash.clock) as store:
            reject(store, plan_id)
    except KisystemError as err:
        return _back(str(err), ok=False)
    return _back(f"plan {plan_id} rejected: it will not be applied", ok=True)


def _require_plan_table(request: Request, plan_id: int) -> None:
    """An id no plan can have, or a database without plans (an older schema, left as it is): no such plan."""
    if plan_id > MAX_PLAN_ID or not _dash(request).db.has("optimization_plans"):
        raise UnknownPlan(f"no optimization plan {plan_id}")


def _approval(request: Request) -> Approval | None:
    return getattr(request.app.state, "approval", None)


def _back(message: str, *, ok: bool) -> Response:
    """303 back to the page, the message riding along in a cookie for one view."""
    response = RedirectResponse(f"{PAGE}#plans", status_code=303)
    response.set_cookie(FLASH_COOKIE, quote(f"{'ok' if ok else 'error'}:{message}"), max_age=FLASH_MAX_AGE_S,
                        path=PAGE, httponly=True, samesite="strict")
    return response


def _flash(request: Request) -> dict[str, object] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    kind, _, message = unquote(raw).partition(":")
    return {"ok": kind == "ok", "message": message}


# -- the Alerts page ---------------------------------------------------------------------------


def alerts_page(request: Request) -> Response:
    dash = _dash(request)
    found = alerts.all_alerts(dash.db, dash.clock())
    counts = Counter(a.kind for a in found)
    return _render(request, "alerts.html", {
        "alerts": found, "counts": {kind: counts.get(kind, 0) for kind in alerts.KINDS},
        "critical": sum(a.severity == "critical" for a in found), "limits": {
            "alert_days": alerts.ALERT_DAYS, "pattern_days": alerts.NEW_PATTERN_DAYS,
            "backend_days": alerts.BACKEND_DAYS, "drop_points": alerts.HEALTH_DROP_POINTS,
            "floor": alerts.HEALTH_FLOOR, "streak": alerts.JOB_STREAK_CRITICAL}})


def alerts_count(request: Request) -> Response:
    """The number the nav shows beside "Alerts" (nothing when there are none), loaded after the page."""
    dash = _dash(request)
    n = len(alerts.all_alerts(dash.db, dash.clock()))
    return HTMLResponse(f'<span class="outcome outcome-failed" title="alerts">{n}</span>' if n else "")


ROUTES = [
    Route(PAGE, improvement_page, name="improvement"),
    Route(PAGE + "/plans/{plan_id:int}/approve", approve_plan, methods=["POST"], name="approve_plan"),
    Route(PAGE + "/plans/{plan_id:int}/reject", reject_plan, methods=["POST"], name="reject_plan"),
    Route("/alerts", alerts_page, name="alerts"),
    Route("/alerts/count", alerts_count, name="alerts_count"),
]
