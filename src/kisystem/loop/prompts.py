"""Prompts for generate, fix and optimize, rendered from package-data templates.

Chat models get a system message and a user message.  Base models in completion mode
get the task's completion prefix; on a fix the error and hint go in front of it as
source comments, the only channel a base model reads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cache
from importlib.resources import files
from string import Template

from kisystem.loop.taskspec import TaskSpec

COMMENT = {"python": "#", "c": "//", "cpp": "//", "cuda": "//"}
NOTE_LINES = 3  # error lines a base model sees as comments above the prefix
FENCE_LANG = {"python": "python", "c": "c", "cpp": "cpp", "cuda": "cuda", "markdown": "markdown"}


@cache
def template(name: str) -> Template:
    return Template(files("kisystem").joinpath("templates", f"{name}.txt").read_text())


@dataclass(frozen=True)
class Feedback:
    """What went wrong (or how good it is) in the previous iteration."""

    previous_code: str
    phase: str = ""
    error_type: str = ""
    excerpt: str = ""
    hint: str = ""
    score: float = 0.0
    target: float = 0.0
    profile: str = ""
    passed: bool = False  # tests passed, score under target: optimize rather than fix
    lessons: str = ""  # "lessons from earlier runs" for this model and domain (improve/), if any

    def trimmed(self, keep: float) -> Feedback | None:
        """This feedback with its code, error excerpt and profile cut to ``keep`` of their
        length (head and tail stay); None when they are too short to gain anything."""
        parts = (self.previous_code, self.excerpt, self.profile)
        if sum(map(len, parts)) < 2 * MIN_TRIMMED_CHARS:
            return None
        code, excerpt, profile = (_cut(text, max(MIN_TRIMMED_CHARS, int(len(text) * keep))) for text in parts)
        return replace(self, previous_code=code, excerpt=excerpt, profile=profile)


MIN_TRIMMED_CHARS = 200


def _cut(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters: its first two thirds and last third stay."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[len(text) - limit // 3:]
    return f"{head}\n[... {len(text) - len(head) - len(tail)} characters cut to fit the model's context ...]\n{tail}"


def chat_messages(task: TaskSpec, feedback: Feedback | None = None) -> list[dict[str, str]]:
    system = template("system").substitute(language=task.language)
    return [{"role": "system", "content": system}, {"role": "user", "content": _user_text(task, feedback)}]


def _user_text(task: TaskSpec, feedback: Feedback | None) -> str:
    fields = {"task_id": task.id, "domain": task.domain, "language": FENCE_LANG.get(task.language, ""),
              "prompt": task.prompt.strip(), "solution_file": task.solution_file, "starter": _starter(task)}
    if feedback is None:
        return template("generate").substitute(fields)
    fields.update(previous_code=feedback.previous_code.strip(), phase=feedback.phase,
                  error_type=feedback.error_type, excerpt=feedback.excerpt.strip(), hint=feedback.hint,
                  score=f"{feedback.score:.0f}", target=f"{feedback.target:.0f}", profile=feedback.profile,
                  lessons=f"\n{feedback.lessons.strip()}\n" if feedback.lessons.strip() else "")
    return template("optimize" if feedback.passed else "fix").substitute(fields)


def _starter(task: TaskSpec) -> str:
    blocks = [f"\nStarting point `{name}`:\n```\n{text}\n```" for name, text in task.starter.items()]
    return "".join(blocks)


def completion_prompt(task: TaskSpec, feedback: Feedback | None = None) -> str:
    """The prefix a base model continues; error notes prepended as comments on a fix."""
    prefix = task.completion.prefix if task.completion else task.prompt
    if feedback is None or feedback.passed or task.language not in COMMENT:
        return prefix
    comment = COMMENT[task.language]
    lines = [line.strip()[:160] for line in feedback.excerpt.splitlines() if line.strip()][:NOTE_LINES]
    error = f"\n{comment}   ".join(lines) or feedback.error_type
    notes = template("completion_fix").substitute(comment=comment, phase=feedback.phase,
                                                  error_line=error, hint=feedback.hint)
    return notes + prefix
