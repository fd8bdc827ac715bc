"""Lessons for fix and optimize prompts, refreshed after each run rather than on every prompt.

Drawing learnings detects the model's patterns first (a scan of the window's feedback), so
a :class:`Teacher` draws them once per (domain, model) and keeps the text until a run ends:
only a finished run changes what there is to learn.  It is a LoopEvent observer (wire it
into the event chain) and the Supervisor's ``lessons`` callable at once.
"""

from __future__ import annotations

from collections.abc import Callable

from kisystem.improve.feedback import DEFAULT_LESSON_CHARS, FeedbackLoop
from kisystem.loop.supervisor import LoopEvent


class Teacher:
    def __init__(self, feedback: FeedbackLoop, max_chars: int = DEFAULT_LESSON_CHARS,
                 forward: Callable[[LoopEvent], None] | None = None) -> None:
        self.feedback = feedback
        self.max_chars = max_chars
        self.forward = forward
        self._known: dict[tuple[str, str], str] = {}
        self.drawn = 0  # how often learnings were drawn (for tests and the curious)

    def lessons(self, domain: str, model: str) -> str:
        """The lessons for ``model`` on ``domain`` tasks, drawn at most once between two runs' ends."""
        key = (domain, model)
        if key not in self._known:
            self.feedback.generate_learnings(model)
            self.drawn += 1
            self._known[key] = self.feedback.lessons_for(domain, model, self.max_chars)
        return self._known[key]

    def __call__(self, event: LoopEvent) -> None:
        if event.kind == "exit":
            self._known.clear()
        if self.forward is not None:
            self.forward(event)
