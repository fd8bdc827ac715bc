"""The loop records its own feedback: a :class:`FeedbackRecorder` turns LoopEvents into entries.

Wire it as the Supervisor's ``on_event`` (``forward`` passes every event on, e.g. to the
live view).  The agent is the model; the operation is ``RUN_ID:ITERATION``; the context
holds domain, task, run id, iteration and, for failures, the error type.

===============================  ============  ===============================================
event                            source        feedback
===============================  ============  ===============================================
``build`` not ok                 ``test``      failure (COMPILATION ..., the categorizer's
                                               rule, signature and hint)
``test`` ok / not ok             ``test``      success (score passed/total when judged, else
                                               1) / failure with the error
``score`` of an iteration        ``test`` /    failure: an answer without code or with an
without build or test            ``system``    unsafe file name (``test``), or the backend
                                               failed to answer (``system``)
``profile`` with a score         ``system``    performance = the profiled score / 100
                                               (``details.regression`` from the profiler)
``review`` (static analysis)     ``guardian``  quality_score, and security where analysed
``exit`` success                 ``system``    success, score = best score / 100
``exit`` failed / exhausted      ``system``    failure with the last iteration's error
===============================  ============  ===============================================

Aborted, crashed and interrupted runs give no run outcome: they are not the model's doing
(as for the meta-supervisor's evidence).  Recording never breaks a run: an error while
recording is logged and the event still goes on to ``forward``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kisystem.improve.feedback import FeedbackLoop
from kisystem.loop.supervisor import LoopEvent

log = logging.getLogger(__name__)

EXCERPT_KEPT = 300
RUN_OUTCOMES = ("success", "failed", "exhausted")
_FAILURE_KEYS = ("error_type", "phase", "rule", "signature", "hint", "severity")


@dataclass
class _Run:
    """What the recorder remembers of a run between its events."""

    task: str
    domain: str
    judged: set[int] = field(default_factory=set)  # iterations whose build or test was recorded
    last_error: dict[str, Any] = field(default_factory=dict)


class FeedbackRecorder:
    """A LoopEvent handler that records feedback for every build, test, profile and run outcome.

    ``domain_of(task_id)`` names a task's domain; by default it is read from the run's row.
    """

    def __init__(self, feedback: FeedbackLoop, *, domain_of: Callable[[str], str] | None = None,
                 forward: Callable[[LoopEvent], None] | None = None) -> None:
        self.feedback = feedback
        self.domain_of = domain_of
        self.forward = forward
        self._runs: dict[str, _Run] = {}

    def __call__(self, event: LoopEvent) -> None:
        try:
            self._record(event)
        except Exception as err:  # feedback is an observer: a failure to record must not end the run
            log.warning("feedback not recorded for the %s event of run %s: %s: %s",
                        event.kind, event.run_id, type(err).__name__, err)
        if self.forward is not None:
            self.forward(event)

    def _record(self, event: LoopEvent) -> None:
        handler = _HANDLERS.get(event.kind)
        if handler is not None:
            handler(self, event)

    # -- events -------------------------------------------------------------------------

    def _start(self, event: LoopEvent) -> None:
        self._runs[event.run_id] = _Run(event.task, self._domain(event))

    def _build(self, event: LoopEvent) -> None:
        if not event.data.get("ok"):
            self._phase_failure(event)

    def _test(self, event: LoopEvent) -> None:
        if not event.data.get("ok"):
            return self._phase_failure(event)
        run = self._run(event)
        run.judged.add(event.iteration)
        data = event.data
        passed, total = data.get("passed"), data.get("total")
        score = passed / total if data.get("judged") and total else 1.0
        details = {"seconds": data.get("seconds"), **({"passed": passed, "total": total} if total else {})}
        self.feedback.record_success(event.model, _operation(event), details, score, source="test",
                                     context=self._context(event, run))

    def _score(self, event: LoopEvent) -> None:
        run = self._run(event)
        message = event.data.get("error")
        if event.iteration in run.judged or not message:
            return
        if event.data.get("score") is None:  # no answer at all
            error = {"error_type": "RUNTIME", "phase": "GENERATE", "rule": "generate.backend", "message": message}
            return self._failure(event, run, error, "system")
        rule = "generate.unsafe_path" if "unsafe" in message else "generate.no_code"
        self._failure(event, run, {"error_type": "COMPILATION", "phase": "GENERATE", "rule": rule,
                                   "signature": rule, "message": message}, "test")

    def _profile(self, event: LoopEvent) -> None:
        score = event.data.get("score")
        if event.data.get("error") or not isinstance(score, (int, float)):
            return
        run = self._run(event)
        details = {k: event.data.get(k) for k in ("tier", "tool", "regression", "slowdown", "seconds")}
        self.feedback.record_feedback(event.model, _operation(event), "performance",
                                      min(1.0, max(0.0, score / 100.0)), details, "system",
                                      self._context(event, run))

    def _review(self, event: LoopEvent) -> None:
        run, data = self._run(event), event.data
        details = {"findings": data.get("findings", []), "tools": data.get("tools", [])}
        self.feedback.record_quality_score(event.model, _operation(event), data["quality"], source="guardian",
                                           context=self._context(event, run))
        if data.get("security") is not None:
            self.feedback.record_feedback(event.model, _operation(event), "security", data["security"], details,
                                          "guardian", self._context(event, run))

    def _exit(self, event: LoopEvent) -> None:
        run = self._runs.pop(event.run_id, None) or _Run(event.task, self._domain(event))
        outcome = event.data.get("outcome")
        if outcome not in RUN_OUTCOMES:
            return
        details = {"outcome": outcome, "reason": event.data.get("reason")}
        if outcome == "success":
            score = min(1.0, max(0.0, float(event.data.get("score") or 0.0) / 100.0))
            self.feedback.record_success(event.model, _operation(event), details, score, source="system",
                                         context=self._context(event, run))
        else:
            self._failure(event, run, {**run.last_error, **details}, "system")

    # -- helpers ------------------------------------------------------------------------

    def _phase_failure(self, event: LoopEvent) -> None:
        run = self._run(event)
        run.judged.add(event.iteration)
        error = event.data.get("error") or {}
        details = {k: error.get(k) for k in _FAILURE_KEYS if error.get(k) is not None}
        details["excerpt"] = str(error.get("excerpt", ""))[:EXCERPT_KEPT]
        details["seconds"] = event.data.get("seconds")
        if event.data.get("judged"):
            details.update(passed=event.data.get("passed"), total=event.data.get("total"))
        self._failure(event, run, details, "test")

    def _failure(self, event: LoopEvent, run: _Run, details: dict[str, Any], source: str) -> None:
        if event.kind != "exit":
            run.last_error = {k: details[k] for k in ("error_type", "phase", "rule", "signature", "hint")
                              if details.get(k) is not None}
        context = {**self._context(event, run), "error_type": details.get("error_type")}
        self.feedback.record_failure(event.model, _operation(event), details, details.get("error_type"),
                                     source=source, context=context)

    def _run(self, event: LoopEvent) -> _Run:
        run = self._runs.get(event.run_id)
        if run is None:  # attached after the run's start
            run = self._runs[event.run_id] = _Run(event.task, self._domain(event))
        return run

    def _domain(self, event: LoopEvent) -> str:
        if self.domain_of is not None:
            return self.domain_of(event.task)
        row = self.feedback.store.get_run(event.run_id)
        return row.domain if row is not None else ""

    @staticmethod
    def _context(event: LoopEvent, run: _Run) -> dict[str, Any]:
        return {"domain": run.domain or None, "task": run.task, "run_id": event.run_id, "iteration": event.iteration}


def _operation(event: LoopEvent) -> str:
    return f"{event.run_id}:{event.iteration}"


_HANDLERS: dict[str, Callable[[FeedbackRecorder, LoopEvent], None]] = {
    "start": FeedbackRecorder._start,
    "build": FeedbackRecorder._build,
    "test": FeedbackRecorder._test,
    "score": FeedbackRecorder._score,
    "profile": FeedbackRecorder._profile,
    "review": FeedbackRecorder._review,
    "exit": FeedbackRecorder._exit,
}
