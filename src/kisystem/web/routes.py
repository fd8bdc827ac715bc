"""The dashboard's pages: each handler reads, then renders a template (autoescaped).

Handlers are plain functions, so Starlette runs them in its thread pool and a slow read never
stalls the event loop that streams ``/events``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from kisystem.errors import UsageError
from kisystem.store.learning import OUTCOMES
from kisystem.web import overview, resources
from kisystem.web.metrics import CONTENT_TYPE, exposition
from kisystem.web.run_detail import run_detail
from kisystem.web.runs import Cursor, RunFilter, filter_options, runs_page

if TYPE_CHECKING:
    from kisystem.web.app import Dashboard


def overview_page(request: Request) -> Response:
    return _render(request, "overview.html", _overview_context(request, full=True))


def overview_live(request: Request) -> Response:
    """The part of the overview that ``/events`` refreshes: runs in flight and the outcome counts."""
    return _render(request, "_live.html", _overview_context(request, full=False))


def _overview_context(request: Request, *, full: bool) -> dict:
    dash = _dash(request)
    now = dash.clock()
    context = {"in_flight": overview.in_flight(dash.db, now), "outcomes": overview.outcome_counts(dash.db, now)}
    if full:
        context |= {"queue": overview.queue_depth(dash.db), "chart": overview.daily_chart(dash.db, now),
                    "model_seconds": overview.model_seconds(dash.db, dash.fold, now),
                    "resources": resources.panel(dash.sampler, dash.db, now)}
    return context


def runs_list(request: Request) -> Response:
    dash, params = _dash(request), request.query_params
    flt = RunFilter(*(params.get(k, "").strip() for k in ("q", "domain", "model", "outcome")))
    try:
        before, after = (Cursor.parse(params[k]) if params.get(k) else None for k in ("before", "after"))
    except UsageError as err:
        return _render(request, "error.html", {"message": str(err)}, status_code=400)
    page = runs_page(dash.db, flt, before, after)
    links = {name: _link(request, flt, key, cursor) for name, key, cursor in
             (("older", "before", page.older), ("newer", "after", page.newer))}  # fmt: skip
    fragment = request.headers.get("hx-request") and not request.headers.get("hx-history-restore-request")
    template = "_runs_table.html" if fragment else "runs.html"
    return _render(request, template, {"page": page, "filter": flt, "links": links, "outcomes": OUTCOMES,
                                       "options": filter_options(dash.db)})


def run_page(request: Request) -> Response:
    run_id = request.path_params["run_id"]
    detail = run_detail(_dash(request).db, run_id)
    if detail is None:
        return _render(request, "error.html", {"message": f"no run {run_id}"}, status_code=404)
    return _render(request, "run.html", {"d": detail})


def metrics(request: Request) -> Response:
    return Response(exposition(_dash(request).registry), media_type=CONTENT_TYPE)


def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/static/"):
        return PlainTextResponse("not found", status_code=404)
    return _render(request, "error.html", {"message": f"no page {request.url.path}"}, status_code=404)


def _link(request: Request, flt: RunFilter, key: str, cursor: Cursor | None) -> str | None:
    return f"{request.url.path}?{urlencode({**flt.query(), key: cursor.token()})}" if cursor else None


def _dash(request: Request) -> Dashboard:
    return request.app.state.dashboard


def _render(request: Request, name: str, context: dict, status_code: int = 200) -> Response:
    dash = _dash(request)
    base = {"csrf_token": dash.csrf_token, "db_path": str(dash.db.path), "nav": request.url.path}
    return dash.templates.TemplateResponse(request, name, {**base, **context}, status_code=status_code)
