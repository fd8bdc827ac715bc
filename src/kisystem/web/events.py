"""``/events``: the loop's run events as server-sent events, as they are written.

The endpoint polls ``run_events`` for ids above the last one it sent (a range scan of the primary
key) every ``poll_s`` and sends each new event as ``event: run_event`` with its id, so a browser
that reconnects (``EventSource`` does by itself) resumes with ``Last-Event-ID`` where it left off.
A stream ends after ``lifetime_s``, so no connection is held forever and a stopping server is
not kept waiting; the browser then reconnects.  Each event is a small summary (run, task, kind,
iteration, model, score, outcome), never the payload's code or output.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import StreamingResponse

from kisystem.web.db import DashboardDb

BATCH = 200
KEEPALIVE_S = 15.0
RETRY_MS = 2000
SUMMARY_KEYS = ("iteration", "model", "score", "outcome", "ok", "previous")

_NEW_EVENTS = f"""
SELECT e.id, e.run_id, e.ts, e.kind, e.payload, r.task, r.domain
FROM run_events e JOIN runs r ON r.run_id = e.run_id
WHERE e.id > ? ORDER BY e.id LIMIT {BATCH}
"""


@dataclass(frozen=True)
class Stream:
    """How often the endpoint polls and how long one stream lasts."""

    poll_s: float = 1.0
    lifetime_s: float = 300.0


def events_after(db: DashboardDb, last_id: int) -> list[dict[str, Any]]:
    """Up to BATCH events with an id above ``last_id``, oldest first, as the summaries sent."""
    return [_summary(r) for r in db.rows(_NEW_EVENTS, (last_id,))]


def start_id(db: DashboardDb, request: Request) -> int:
    """Resume after ``Last-Event-ID`` (a reconnect) or ``?after=``; a new stream starts at the newest event."""
    for given in (request.headers.get("last-event-id"), request.query_params.get("after")):
        if given and given.isdigit():
            return int(given)
    return int(db.value("SELECT MAX(id) FROM run_events") or 0)


async def events_response(db: DashboardDb, request: Request, stream: Stream) -> StreamingResponse:
    last = await run_in_threadpool(start_id, db, request)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(_stream(db, last, stream), media_type="text/event-stream", headers=headers)


async def _stream(db: DashboardDb, last: int, stream: Stream) -> AsyncIterator[str]:
    deadline = time.monotonic() + stream.lifetime_s
    quiet_since = time.monotonic()
    yield f"retry: {RETRY_MS}\n: since {last}\n\n"
    while time.monotonic() < deadline:
        found = await run_in_threadpool(events_after, db, last)
        if found:  # one write per batch: a backlog goes out at once
            last = found[-1]["id"]
            quiet_since = time.monotonic()
            yield "".join(_message(event) for event in found)
        elif time.monotonic() - quiet_since >= KEEPALIVE_S:
            quiet_since = time.monotonic()
            yield ": keepalive\n\n"
        if len(found) < BATCH:
            await asyncio.sleep(stream.poll_s)


def _message(event: dict[str, Any]) -> str:
    return f"event: run_event\nid: {event['id']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"


def _summary(row: Any) -> dict[str, Any]:
    try:
        payload = json.loads(row["payload"])
    except ValueError:
        payload = {}
    payload = payload if isinstance(payload, dict) else {}
    picked = {k: payload[k] for k in SUMMARY_KEYS if isinstance(payload.get(k), str | int | float | bool)}
    return {"id": row["id"], "run_id": row["run_id"], "ts": row["ts"], "kind": row["kind"], "task": row["task"],
            "domain": row["domain"], **picked}
