"""The Stats page: seed B's success metrics (what ``kisystem stats`` prints), the Phase 7 goals first.

``?days=N`` limits the figures to the last N days (runs started, tasks queued), as ``--days`` does; the
report is kept a few minutes (:class:`~kisystem.web.stats_report.StatsSource`), and the page says when
it was computed.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from kisystem.errors import UsageError
from kisystem.stats.efficiency import FIFO_NEEDS, ROI_NEEDS, THROUGHPUT_NEEDS, WAIT_NEEDS
from kisystem.stats.escalation import MODELS_NEED, RUNS_NEEDS
from kisystem.stats.goals import ABOVE_RANGE, MET, NO_DATA, NOT_MET
from kisystem.stats.profiling import SAVINGS_NEED, saved_ratio
from kisystem.web.routes import _dash, _render

MAX_DAYS = 36500
WINDOWS = (None, 1, 7, 30)  # the links above the tables
STATUS_CLASS = {MET: "outcome-success", NOT_MET: "outcome-failed", ABOVE_RANGE: "outcome-aborted", NO_DATA: ""}
NEEDS = {"runs": RUNS_NEEDS, "models": MODELS_NEED, "fifo": FIFO_NEEDS, "roi": ROI_NEEDS, "wait": WAIT_NEEDS,
         "throughput": THROUGHPUT_NEEDS, "savings": SAVINGS_NEED}  # fmt: skip


def stats_page(request: Request) -> Response:
    try:
        days = _days(request.query_params.get("days", "").strip())
    except UsageError as err:
        return _render(request, "error.html", {"message": str(err)}, status_code=400)
    source = _dash(request).stats
    computed = source.report(days)
    report = computed.report
    context = {"computed": computed, "r": report, "days": days, "windows": WINDOWS, "max_age_s": source.max_age_s,
               "status_class": STATUS_CLASS, "needs": NEEDS,
               "saved_ratio": saved_ratio(report.profiling) if report else None,
               "models": [m for d in report.escalation.domains for m in d.models] if report else []}  # fmt: skip
    return _render(request, "stats.html", context)


def _days(raw: str) -> int | None:
    """None (all history) for nothing given, else a whole number of days."""
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise UsageError(f"days must be a whole number from 1 to {MAX_DAYS}, not {raw!r}")
    return int(raw)
