"""Learnings from patterns: the seed's five learning types, and the lessons text for prompts.

=========================  ==============================================================
learning type              generated from
=========================  ==============================================================
``error_avoidance``        a failure pattern: avoid that error in that domain (with the
                           categorizer's hint)
``positive_reinforcement`` a success pattern, or high / improving quality or performance
``optimization``           low / declining quality, slow / declining performance, speed
                           regressions
``pattern_recognition``    a behavior pattern (repeating an error after feedback)
``skill_enhancement``      a capability gap: the failure pattern *several_errors* (an agent
                           fails a domain often, in two or more different ways)
=========================  ==============================================================

Impact (0..1) = confidence x min(1, frequency / IMPACT_FULL_AT): a sure pattern seen 10
times or more has full impact.  Every learning names the patterns it came from (their
stored ids; a skill gap also names the single-error patterns of its group).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from kisystem.improve.patterns import DetectedPattern, Thresholds

LEARNING_TYPES: tuple[str, ...] = (
    "error_avoidance", "positive_reinforcement", "optimization", "pattern_recognition", "skill_enhancement",
)  # fmt: skip
LESSON_TYPES: tuple[str, ...] = ("error_avoidance", "skill_enhancement", "pattern_recognition", "optimization")
"""What goes into a prompt: a success pattern tells the model nothing it can act on."""
IMPACT_FULL_AT = 10
LESSONS_HEADER = "Lessons from earlier runs:"
_ELLIPSIS = "..."


@dataclass(frozen=True)
class Learning:
    """One lesson: its type, title, description, impact 0..1 and the patterns it came from."""

    learning_type: str
    agent_id: str
    key: str
    domain: str | None
    title: str
    description: str
    impact: float
    pattern_ids: tuple[int, ...] = ()
    id: int | None = None
    updated: datetime | None = None

    def stored(self, learning_id: int, when: datetime) -> Learning:
        return replace(self, id=learning_id, updated=when)

    def lesson(self) -> str:
        return f"{self.title}: {self.description}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "learning_type": self.learning_type, "agent_id": self.agent_id, "domain": self.domain,
            "title": self.title, "description": self.description, "impact": round(self.impact, 4),
            "pattern_ids": list(self.pattern_ids), "updated": self.updated.isoformat() if self.updated else None,
        }  # fmt: skip


def impact(confidence: float, frequency: int) -> float:
    return round(max(0.0, min(1.0, confidence * min(1.0, frequency / IMPACT_FULL_AT))), 4)


def learnings_from(patterns: Iterable[DetectedPattern], thresholds: Thresholds | None = None) -> list[Learning]:
    """The learnings ``patterns`` support, highest impact first."""
    patterns = list(patterns)
    found = [learning for p in patterns for learning in _single(p, patterns)]
    return sorted(found, key=lambda item: (-item.impact, item.agent_id, item.learning_type, item.key))


def _ids(patterns: Iterable[DetectedPattern]) -> tuple[int, ...]:
    return tuple(p.id for p in patterns if p.id is not None)


def _where(p: DetectedPattern) -> str:
    return p.domain or "any domain"


def _learning(kind: str, p: DetectedPattern, title: str, description: str) -> Learning:
    return Learning(kind, p.agent_id, f"{p.pattern_type}:{p.key}", p.domain, title, description,
                    impact(p.confidence, p.frequency), _ids([p]))


def _single(p: DetectedPattern, patterns: Sequence[DetectedPattern]) -> list[Learning]:
    """The learning one pattern gives (none for a kind that teaches nothing)."""
    kind = p.kind
    if kind == "several_errors":
        return [_skill_gap(p, patterns)]
    if p.pattern_type == "failure":
        return [_error_avoidance(p)]
    if p.pattern_type == "success" or kind in ("high", "fast", "improving"):
        return [_learning("positive_reinforcement", p, f"{p.agent_id} does well on {_where(p)}",
                          f"{p.description}; keep what it does there.")]
    if p.pattern_type in ("quality", "performance"):
        return [_optimization(p)]
    if p.pattern_type == "behavior":
        return [_learning("pattern_recognition", p, f"Do not repeat an error after feedback on {_where(p)}",
                          f"{_share(p)} retries repeated the previous error ({p.details.get('label')}): "
                          "read the error and change the approach instead of resubmitting a variant.")]
    return []


def _share(p: DetectedPattern) -> str:
    return f"{p.frequency} of {p.total}"


def _error_avoidance(p: DetectedPattern) -> Learning:
    label = p.details.get("label") or "an error"
    hint = p.details.get("hint")
    advice = f" Hint: {hint.rstrip('.')}." if hint else ""
    return _learning("error_avoidance", p, f"Avoid {label} on {_where(p)}",
                     f"{_share(p)} earlier attempts failed with it.{advice}")


_OPTIMIZATION_ADVICE = {
    "low": "raise it: smaller functions, clear names, no dead code, handle errors",
    "declining": "it is getting worse: compare with the earlier, better answers",
    "slow": "profile the hot path and remove work from it",
    "regression": "undo what made the code slower than its previous version",
}


def _optimization(p: DetectedPattern) -> Learning:
    what = str(p.details.get("type", p.pattern_type)).replace("_", " ")
    advice = _OPTIMIZATION_ADVICE.get(p.kind, "improve it")
    return _learning("optimization", p, f"Improve {what} on {_where(p)}",
                     f"{what} was {p.kind} in {_share(p)} results; {advice}.")


def _skill_gap(p: DetectedPattern, patterns: Sequence[DetectedPattern]) -> Learning:
    group = (p.agent_id, p.domain, p.details.get("source"))
    same_group = [q for q in patterns if q.pattern_type == "failure" and q.kind != "several_errors"
                  and (q.agent_id, q.domain, q.details.get("source")) == group]
    labels = ", ".join(p.details.get("labels", []))
    learning = _learning("skill_enhancement", p, f"{p.agent_id} lacks skill on {_where(p)}",
                         f"{_share(p)} attempts failed in {len(p.details.get('labels', []))} different ways "
                         f"({labels}): think the task through before writing code, and check each requirement.")
    return replace(learning, pattern_ids=_ids([p, *same_group]))


def lessons_text(learnings: Iterable[Learning], max_chars: int) -> str:
    """A header and one line per lesson (highest impact first, one per title), at most
    ``max_chars`` characters in all; "" when no lesson fits."""
    lines: list[str] = []
    seen: set[str] = set()
    length = len(LESSONS_HEADER)
    for item in sorted(learnings, key=lambda item: -item.impact):
        if item.learning_type not in LESSON_TYPES or item.title in seen:
            continue
        seen.add(item.title)
        line = f"\n- {item.lesson()}"
        room = max_chars - length
        if len(line) > room:
            if not lines and room > len("\n- ") + len(_ELLIPSIS) + 10:  # a first lesson, cut, beats none
                lines.append(line[: room - len(_ELLIPSIS)] + _ELLIPSIS)
            break
        lines.append(line)
        length += len(line)
    return LESSONS_HEADER + "".join(lines) if lines else ""
