"""The Queue and Profiling pages, and the queue's cancel and retry buttons.

The pages read through the dashboard's read-only connection, and the figures the queue's ordering
and the profiling statistics compute through a read-only LearningStore opened per request
(:func:`~kisystem.web.queue_view.read_only_store`).

Cancel and retry are the dashboard's only writes.  They are POST only (the Guard has checked the
CSRF token before a handler runs), and go through the queue's own store, :meth:`QueueStore.cancel`
and :meth:`QueueStore.retry`: the same checks, transition log and errors as ``kisystem queue cancel``
and ``retry``, on a writable connection that lives for that one request.  Success is a 303 back to
``/queue`` whose query names what was done (the page words the message, so a link cannot put
text in it); a task id that is not a number (400), no such task (404) and a change the task's
state does not allow (409) show the queue page again with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from kisystem.errors import KisystemError, UsageError
from kisystem.store.queue import QueueCommandRefused, QueueStore, QueueTaskNotFound
from kisystem.web.overview import queue_depth
from kisystem.web.profiling_view import parse_days, profiling_page, window_links
from kisystem.web.queue_view import (
    OrderingSettings,
    QueuePage,
    ordering_for,
    queue_page,
    read_only_store,
    task_name,
)
from kisystem.web.routes import _dash, _render

if TYPE_CHECKING:
    from kisystem.web.app import Dashboard

DONE = {"cancel": "cancelled", "retry": "queued again"}
MAX_TASK_ID = 2**63 - 1  # SQLite's largest integer


def queue(request: Request) -> Response:
    return _queue_response(request)


def cancel_task(request: Request) -> Response:
    return _command(request, "cancel")


def retry_task(request: Request) -> Response:
    return _command(request, "retry")


def profiling(request: Request) -> Response:
    dash, params = _dash(request), request.query_params
    try:
        days = parse_days(params.get("days"))
    except UsageError as err:
        return _render(request, "error.html", {"message": str(err)}, status_code=400)
    with read_only_store(dash.db.path, dash.clock) as store:
        page = profiling_page(dash.db, store, dash.clock(), days, params.get("task", "").strip())
    return _render(request, "profiling.html", {"p": page, "days": days, "windows": window_links(days, page.task)})


def ordering_settings(request: Request) -> OrderingSettings:
    """``app.state.ordering_settings`` when set (by ``kisystem serve``, a test), else loaded once as the CLI does."""
    state = request.app.state
    settings = getattr(state, "ordering_settings", None)
    if settings is None:
        settings = state.ordering_settings = OrderingSettings.load()
    return settings


def _queue_response(request: Request, error: str | None = None, status_code: int = 200) -> Response:
    dash = _dash(request)
    counts = queue_depth(dash.db)
    page = _page(request, dash, counts) if counts is not None else None
    return _render(request, "queue.html", {"page": page, "message": _done(request, dash), "error": error},
                   status_code=status_code)  # fmt: skip


def _page(request: Request, dash: Dashboard, counts: dict[str, int]) -> QueuePage:
    if not any(counts.values()):
        return QueuePage(counts)
    settings = ordering_settings(request)
    try:
        with read_only_store(dash.db.path, dash.clock) as store:
            ordering, problem = ordering_for(store, settings), settings.problem
    except KisystemError as err:
        ordering, problem = None, f"ETA and PriorityEff unavailable: {err}"
    return queue_page(dash.db, counts, ordering, dash.clock(), ordering_problem=problem)


def _command(request: Request, action: str) -> Response:
    dash, raw = _dash(request), request.path_params["task_id"]
    if not (raw.isascii() and raw.isdigit()):
        return _queue_response(request, f"bad task id {raw!r}: expected a number such as 12", 400)
    task_id = int(raw)
    if not dash.db.has("queue_tasks") or task_id > MAX_TASK_ID:
        return _queue_response(request, f"no queued task with id {task_id}", 404)
    try:
        with QueueStore.open(dash.db.path, clock=lambda: dash.clock().timestamp()) as store:
            command = store.cancel if action == "cancel" else store.retry
            command(task_id)
    except QueueTaskNotFound as err:
        return _queue_response(request, str(err), 404)
    except QueueCommandRefused as err:
        return _queue_response(request, str(err), 409)
    except KisystemError as err:  # the database is locked, read-only, gone
        return _queue_response(request, f"cannot {action} task {task_id}: {err}", 503)
    return RedirectResponse(f"/queue?{urlencode({'done': action, 'task': task_id})}", status_code=303)


def _done(request: Request, dash: Dashboard) -> str | None:
    """The message after a redirect: worded here from the action and the task's stored name."""
    action, task = request.query_params.get("done"), request.query_params.get("task", "")
    if action not in DONE or not (task.isascii() and task.isdigit()) or int(task) > MAX_TASK_ID:
        return None
    name = task_name(dash.db, int(task))
    return f"Task #{task} {name}: {DONE[action]}." if name is not None else None


ROUTES = [
    Route("/queue", queue, name="queue"),
    Route("/queue/{task_id}/cancel", cancel_task, methods=["POST"], name="queue_cancel"),
    Route("/queue/{task_id}/retry", retry_task, methods=["POST"], name="queue_retry"),
    Route("/profiling", profiling, name="profiling"),
]
