"""One run's page: its row, and its events regrouped into iterations and escalations.

The loop logs each iteration as events tagged with its number (``generate``, ``answer``, ``code``,
``review``, ``build``/``test``/``profile``, ``score``); a failed phase's event carries the
categorizer's error (type, phase, hint, excerpt of the output).  ``escalate`` events say when the
router moved to the next model.  Everything here is data: the template escapes it all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from kisystem.web.db import DashboardDb

PHASES = ("build", "test", "profile")
ITERATION_KINDS = frozenset({"generate", "answer", "code", "review", "score", *PHASES})
LOG_HIDDEN = ("code", "excerpt")  # long fields shown in their own blocks, not in the event log
LOG_CHARS = 300


@dataclass
class Iteration:
    """What one iteration did, assembled from its events."""

    number: int
    model: str | None = None
    answer: dict[str, Any] | None = None
    code: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)  # build/test/profile events, in order
    score: float | None = None
    score_error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def failure(self) -> dict[str, Any] | None:
        """The categorized error of the phase that failed (None when none failed or none was categorized)."""
        failed = [p["error"] for p in self.phases if isinstance(p.get("error"), dict)]
        return failed[-1] if failed else None

    @property
    def phase(self) -> str:
        """How far the iteration got: the failed phase, else the last phase run, else GENERATE."""
        if self.failure and self.failure.get("phase"):
            return str(self.failure["phase"])
        return self.phases[-1]["kind"].upper() if self.phases else "GENERATE"

    @property
    def error_type(self) -> str | None:
        if self.failure and self.failure.get("error_type"):
            return str(self.failure["error_type"])
        return self.score_error


@dataclass(frozen=True)
class LogLine:
    id: int
    ts: str
    kind: str
    summary: str


@dataclass
class RunDetail:
    run: dict[str, Any]
    models_tried: list[str]
    iterations: list[Iteration]
    escalations: list[dict[str, Any]]
    log: list[LogLine]


def run_detail(db: DashboardDb, run_id: str) -> RunDetail | None:
    found = db.rows("SELECT * FROM runs WHERE run_id = ?", (run_id,))
    if not found:
        return None
    run = dict(found[0])
    events = [(r["id"], r["ts"], r["kind"], _payload(r["payload"]))
              for r in db.rows("SELECT id, ts, kind, payload FROM run_events WHERE run_id = ? ORDER BY id", (run_id,))]
    iterations: dict[int, Iteration] = {}
    escalations = []
    for _id, ts, kind, payload in events:
        if kind == "escalate":
            escalations.append({"ts": ts, "iteration": payload.get("iteration"), "to": payload.get("model"),
                                "from": payload.get("previous")})
        elif kind in ITERATION_KINDS and isinstance(payload.get("iteration"), int):
            n = payload["iteration"]
            _apply(iterations.setdefault(n, Iteration(n)), kind, payload)
    log = [LogLine(i, ts, kind, _summary(payload)) for i, ts, kind, payload in events]
    tried = _json_list(run.get("models_tried"))
    return RunDetail(run, tried, [iterations[n] for n in sorted(iterations)], escalations, log)


def _apply(it: Iteration, kind: str, payload: dict[str, Any]) -> None:
    it.model = it.model or _str(payload.get("model"))
    if kind == "answer":
        it.answer = payload
    elif kind == "code":
        it.code = payload
    elif kind == "review":
        it.review = payload
    elif kind in PHASES:
        it.phases.append({"kind": kind, **payload})
    elif kind == "score":
        it.score = payload.get("score") if isinstance(payload.get("score"), int | float) else None
        it.score_error = _str(payload.get("error"))


def _summary(payload: dict[str, Any]) -> str:
    """The payload as compact JSON without its long fields, cut to LOG_CHARS."""
    shown = {k: _without_long(v) for k, v in payload.items() if k not in LOG_HIDDEN}
    text = json.dumps(shown, ensure_ascii=False, default=str, separators=(",", ":"))
    return text if len(text) <= LOG_CHARS else text[:LOG_CHARS - 1] + "…"


def _without_long(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in LOG_HIDDEN}
    return value


def _payload(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {"unparsed": text}
    return value if isinstance(value, dict) else {"value": value}


def _json_list(text: str | None) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def _str(value: object) -> str | None:
    return None if value is None else str(value)
