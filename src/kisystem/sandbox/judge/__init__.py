"""Trusted judges: a task's result decided outside the candidate's process.

``judge_for(spec)`` gives the judge of a task's ``[judge]`` section: ``calls``
(:mod:`.calls`, Python functions) or ``compare`` (:mod:`.compare`, programs whose
output is compared with a reference program's).
"""

from __future__ import annotations

from kisystem.loop.taskspec import JudgeSpec, TaskSpec
from kisystem.sandbox.judge.base import Judge, JudgeContext, JudgeError, Timing, Verdict


def judge_for(task: TaskSpec) -> Judge:
    """The judge of ``task``; a task without ``[judge]`` has none (ValueError)."""
    spec: JudgeSpec | None = task.judge
    if spec is None:
        raise ValueError(f"task {task.id} has no judge: its result is self-reported")
    if spec.kind == "calls":
        from kisystem.sandbox.judge.calls import CallsJudge

        return CallsJudge(task)
    from kisystem.sandbox.judge.compare import CompareJudge

    return CompareJudge(task)


__all__ = ["Judge", "JudgeContext", "JudgeError", "Timing", "Verdict", "judge_for"]
