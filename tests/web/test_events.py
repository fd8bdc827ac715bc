"""/events: server-sent run events, resumed by Last-Event-ID, new ones sent as they are written."""

from __future__ import annotations

import json
import threading

from kisystem.web.events import Stream
from tests.web.support import SCRIPT, Seeded, client


def _events(lines, count: int) -> list[tuple[str, dict]]:
    """The next ``count`` events of an SSE stream as (id, data)."""
    found, event_id = [], None
    for line in lines:
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("data: "):
            found.append((event_id, json.loads(line[6:])))
            if len(found) == count:
                return found
    raise AssertionError(f"the stream ended after {len(found)} of {count} events")


def _newest_id(seeded: Seeded) -> int:
    return max(e.id for e in seeded.db.store.events(seeded.ids["running"]))


def test_resumes_after_last_event_id(seeded: Seeded) -> None:
    solved = seeded.db.store.events(seeded.ids["solved"])
    start = solved[0].id
    with client(seeded.path) as c, c.stream("GET", "/events", headers={"Last-Event-ID": str(start)}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        got = _events(r.iter_lines(), 3)
    assert [int(i) for i, _ in got] == [e.id for e in solved[1:4]]
    first = got[0][1]
    assert first["run_id"] == seeded.ids["solved"] and first["task"] == "add" and first["kind"] == solved[1].kind
    assert (first["iteration"], first["model"]) == (1, "small")
    code = next(d for _, d in got if d["kind"] == "code")
    assert "code" not in code and SCRIPT not in json.dumps(code)  # a summary: never the code or output


def test_sends_events_written_after_it_opened(seeded: Seeded) -> None:
    newest = _newest_id(seeded)

    def append() -> None:  # the loop, in another connection, a little later
        seeded.db.store.append_event(seeded.ids["running"], "answer", {"iteration": 1, "model": "small",
                                                                        "seconds": 3.0})
        seeded.db.store.append_event(seeded.ids["running"], "score", {"iteration": 1, "model": "small", "score": 80})

    timer = threading.Timer(0.3, append)
    with client(seeded.path) as c, c.stream("GET", "/events") as r:
        timer.start()
        got = _events(r.iter_lines(), 2)
    timer.join()
    assert [int(i) for i, _ in got] == [newest + 1, newest + 2]
    assert [(d["kind"], d["task"]) for _, d in got] == [("answer", "long"), ("score", "long")]
    assert got[1][1]["score"] == 80


def test_a_stream_sends_each_event_once_and_ends_after_its_lifetime(seeded: Seeded) -> None:
    newest = _newest_id(seeded)
    with client(seeded.path, stream=Stream(poll_s=0.01, lifetime_s=0.3)) as c:
        quiet = c.get("/events").text
        resumed = c.get("/events", headers={"Last-Event-ID": str(newest - 5)}).text
    assert quiet.startswith("retry: ") and "event:" not in quiet
    ids = [int(line[4:]) for line in resumed.splitlines() if line.startswith("id: ")]
    assert ids == list(range(newest - 4, newest + 1))  # polled some 30 times: each event sent once
