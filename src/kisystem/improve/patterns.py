"""Pattern detection over feedback entries: the seed's five pattern types.

Every pattern is counted inside one *group*: one agent, one source and one domain (a
domain-less entry is in the group "any domain").  Sources are never mixed, so a test
result and the run outcome that followed it are not counted twice.  A pattern needs
``frequency >= pattern_min_frequency`` and ``confidence >= pattern_min_confidence``
(config section ``feedback``; the seed's 3 and 0.6) inside the lookback window (7 days).

How frequency (``n``) and confidence are computed, per type:

``failure``
    Failures grouped further by error type and error rule (the categorizer's rule, e.g.
    ``ld.undefined_reference``, else the error type alone).  n = failures with that error;
    confidence = n / (successes + failures of the group): "5 of 6 times".  When the
    group's failures have two or more different errors, also the kind *several_errors*:
    n = all its failures, same confidence rule (a capability gap: no one error explains it).
``success``
    n = successes of the group; confidence = n / (successes + failures).
``quality``
    For each quality type (``quality_score``, ``security``, ``documentation``,
    ``coverage``, ``user_rating``) of the group, over its m scores: *low* with n = scores
    below ``quality_threshold`` and confidence n / m; *high* with n = the others, n / m;
    a *declining* or *improving* trend with n = m when the later half's mean differs from
    the earlier half's by at least TREND_MIN_CHANGE, confidence = the share of ordered
    pairs (earlier, later) with different scores that move in the trend's direction
    (Kendall's concordance, 1.0 for a strictly monotone series).
``performance``
    The same as quality over ``performance`` scores with ``performance_threshold`` (kinds
    *slow*, *fast*, *declining*, *improving*), and *regression*: n = profiles that
    flagged a regression (``details.regression``), confidence n / m.
``behavior``
    Repeating an error after feedback: within one run (``context.run_id``), every failure
    that follows a failure of the same agent is a retry; n = retries whose error
    signature (``details.signature``, else the rule) equals the previous failure's;
    confidence = n / retries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from kisystem.improve.feedback import FeedbackEntry

PATTERN_TYPES: tuple[str, ...] = ("failure", "success", "quality", "performance", "behavior")
QUALITY_TYPES: tuple[str, ...] = ("quality_score", "security", "documentation", "coverage", "user_rating")
OUTCOME_TYPES: tuple[str, ...] = ("success", "failure")
TREND_MIN_CHANGE = 0.05  # mean change (on 0..1) between the halves of a series for a trend
EVIDENCE_KEPT = 10  # operation ids kept per pattern
ANY_DOMAIN = "any domain"
SOURCE_NAMES = {"test": "test results", "system": "run outcomes", "agent": "self-reported", "user": "user ratings",
                "guardian": "static analysis", "flock": "peer feedback"}


class Thresholds(Protocol):
    """What detection reads from the config's ``feedback`` section."""

    pattern_min_frequency: int
    pattern_min_confidence: float
    quality_threshold: float
    performance_threshold: float


@dataclass(frozen=True)
class DetectedPattern:
    """One recurring pattern: ``frequency`` of ``total`` chances, with its confidence.

    ``key`` identifies the group and kind across detections (a pattern found again
    updates its stored row); ``details`` holds the kind, source, error and evidence.
    """

    pattern_type: str
    agent_id: str
    key: str
    domain: str | None
    description: str
    frequency: int
    total: int
    confidence: float
    first_ts: datetime
    last_ts: datetime
    details: dict[str, Any] = field(default_factory=dict)
    id: int | None = None

    @property
    def kind(self) -> str:
        return self.details.get("kind", self.pattern_type)

    def with_id(self, pattern_id: int) -> DetectedPattern:
        return replace(self, id=pattern_id)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "pattern_type": self.pattern_type, "kind": self.kind, "agent_id": self.agent_id,
            "domain": self.domain, "description": self.description, "frequency": self.frequency,
            "total": self.total, "confidence": round(self.confidence, 4), "first_ts": self.first_ts.isoformat(),
            "last_ts": self.last_ts.isoformat(), "details": self.details,
        }  # fmt: skip


@dataclass(frozen=True)
class _Group:
    agent_id: str
    source: str
    domain: str | None

    @property
    def key(self) -> str:
        return f"{self.source}|{self.domain or '*'}"

    @property
    def where(self) -> str:
        return f"{self.domain} tasks" if self.domain else "tasks"


def find_patterns(entries: Iterable[FeedbackEntry], thresholds: Thresholds,
                  lookback_days: int) -> list[DetectedPattern]:
    """Every pattern above the thresholds in ``entries`` (already cut to the window)."""
    window = "this week" if lookback_days == 7 else f"in the last {lookback_days} days"
    found: list[DetectedPattern] = []
    for group, members in _grouped(entries).items():
        for detect in _DETECTORS:
            found.extend(detect(group, members, thresholds, window))
    keep = [p for p in found if _passes(p, thresholds)]
    order = {t: i for i, t in enumerate(PATTERN_TYPES)}
    return sorted(keep, key=lambda p: (order[p.pattern_type], -p.confidence, -p.frequency, p.agent_id, p.key))


def _passes(p: DetectedPattern, t: Thresholds) -> bool:
    return p.frequency >= t.pattern_min_frequency and p.confidence >= t.pattern_min_confidence


def _grouped(entries: Iterable[FeedbackEntry]) -> dict[_Group, list[FeedbackEntry]]:
    groups: dict[_Group, list[FeedbackEntry]] = {}
    for e in entries:
        groups.setdefault(_Group(e.agent_id, e.source, e.domain), []).append(e)
    return groups


def _pattern(pattern_type: str, group: _Group, kind_key: str, description: str, matched: Sequence[FeedbackEntry],
             total: int, confidence: float, **details: Any) -> DetectedPattern:
    return DetectedPattern(
        pattern_type=pattern_type, agent_id=group.agent_id, key=f"{group.key}|{kind_key}", domain=group.domain,
        description=description, frequency=len(matched), total=total, confidence=round(confidence, 6),
        first_ts=min(e.ts for e in matched), last_ts=max(e.ts for e in matched),
        details={"source": group.source, **details,
                 "operations": [e.operation_id for e in matched[-EVIDENCE_KEPT:]]},
    )  # fmt: skip


def _suffix(group: _Group, window: str) -> str:
    return f"{window} ({SOURCE_NAMES.get(group.source, group.source)})"


# -- failure and success ------------------------------------------------------------------


def error_label(error_type: str | None, rule: str | None) -> str:
    """``COMPILATION `undefined reference``` from the error type and the rule ``ld.undefined_reference``."""
    name = rule.rsplit(".", 1)[-1].replace("_", " ") if rule else ""
    text = " ".join(part for part in (error_type or "", f"`{name}`" if name else "") if part)
    return text or "an unspecified error"


def _failures(group: _Group, members: list[FeedbackEntry], t: Thresholds, window: str) -> list[DetectedPattern]:
    outcomes = [e for e in members if e.type in OUTCOME_TYPES]
    by_error: dict[tuple[str | None, str | None], list[FeedbackEntry]] = {}
    for e in outcomes:
        if e.type == "failure":
            by_error.setdefault((e.get("error_type"), e.get("rule")), []).append(e)
    found = []
    for (error_type, rule), matched in by_error.items():
        label = error_label(error_type, rule)
        text = (f"{group.agent_id} fails {group.where} with {label} {len(matched)} of {len(outcomes)} times "
                f"{_suffix(group, window)}")
        hints = Counter(e.details.get("hint") for e in matched if e.details.get("hint"))
        found.append(_pattern("failure", group, f"{error_type or '*'}|{rule or '*'}", text, matched, len(outcomes),
                              len(matched) / len(outcomes), kind="failure", error_type=error_type, rule=rule,
                              label=label, hint=hints.most_common(1)[0][0] if hints else None))
    if len(by_error) > 1:
        found.append(_several_errors(group, outcomes, by_error, window))
    return found


def _several_errors(group: _Group, outcomes: list[FeedbackEntry],
                    by_error: dict[tuple[str | None, str | None], list[FeedbackEntry]], window: str) -> DetectedPattern:
    failures = sorted((e for matched in by_error.values() for e in matched), key=lambda e: (e.ts, e.id))
    ranked = sorted(by_error.items(), key=lambda item: -len(item[1]))
    labels = [error_label(error_type, rule) for (error_type, rule), _ in ranked]
    text = (f"{group.agent_id} fails {group.where} {len(failures)} of {len(outcomes)} times {_suffix(group, window)} "
            f"with {len(labels)} different errors")
    return _pattern("failure", group, "several_errors", text, failures, len(outcomes), len(failures) / len(outcomes),
                    kind="several_errors", labels=labels)


def _successes(group: _Group, members: list[FeedbackEntry], t: Thresholds, window: str) -> list[DetectedPattern]:
    outcomes = [e for e in members if e.type in OUTCOME_TYPES]
    matched = [e for e in outcomes if e.type == "success"]
    if not matched:
        return []
    mean = sum(e.score for e in matched) / len(matched)
    text = (f"{group.agent_id} succeeds at {group.where} {len(matched)} of {len(outcomes)} times "
            f"{_suffix(group, window)}, mean score {mean:.2f}")
    return [_pattern("success", group, "success", text, matched, len(outcomes), len(matched) / len(outcomes),
                     kind="success", mean_score=round(mean, 4))]


# -- quality and performance --------------------------------------------------------------


@dataclass(frozen=True)
class _Series:
    """The scores of one type in one group, oldest first, and how to name them."""

    pattern_type: str
    type: str
    entries: list[FeedbackEntry]
    threshold: float
    low: str  # the kind name of a low level: "low" or "slow"
    high: str


def _levels(group: _Group, s: _Series, window: str) -> list[DetectedPattern]:
    below = [e for e in s.entries if e.score < s.threshold]
    above = [e for e in s.entries if e.score >= s.threshold]
    m = len(s.entries)
    mean = sum(e.score for e in s.entries) / m
    found = []
    for kind, matched, side in ((s.low, below, "below"), (s.high, above, "at or above")):
        if matched:
            text = (f"{group.agent_id}'s {s.type.replace('_', ' ')} on {group.where} is {side} {s.threshold:g} in "
                    f"{len(matched)} of {m} results {_suffix(group, window)} (mean {mean:.2f})")
            found.append(_pattern(s.pattern_type, group, f"{s.type}|{kind}", text, matched, m, len(matched) / m,
                                  kind=kind, type=s.type, mean_score=round(mean, 4), threshold=s.threshold))
    return found


def trend(scores: Sequence[float]) -> tuple[str, float, float] | None:
    """(direction, confidence, change) of a series, or None when its halves' means move by
    less than TREND_MIN_CHANGE.  Confidence: the share of ordered pairs with different
    scores that move in that direction."""
    if len(scores) < 2:
        return None
    half = len(scores) // 2
    change = sum(scores[-half:]) / half - sum(scores[:half]) / half
    if abs(change) < TREND_MIN_CHANGE:
        return None
    up = down = 0
    for i, a in enumerate(scores):
        for b in scores[i + 1:]:
            up += b > a
            down += b < a
    direction, agree = ("improving", up) if change > 0 else ("declining", down)
    return direction, agree / (up + down) if up + down else 0.0, change


def _trend(group: _Group, s: _Series, window: str) -> list[DetectedPattern]:
    found = trend([e.score for e in s.entries])
    if found is None:
        return []
    direction, confidence, change = found
    text = (f"{group.agent_id}'s {s.type.replace('_', ' ')} on {group.where} is {direction} "
            f"({change:+.2f} from the first to the second half of {len(s.entries)} results {_suffix(group, window)})")
    return [_pattern(s.pattern_type, group, f"{s.type}|{direction}", text, s.entries, len(s.entries), confidence,
                     kind=direction, type=s.type, change=round(change, 4))]


def _quality(group: _Group, members: list[FeedbackEntry], t: Thresholds, window: str) -> list[DetectedPattern]:
    found = []
    for type in QUALITY_TYPES:
        entries = [e for e in members if e.type == type]
        if entries:
            series = _Series("quality", type, entries, t.quality_threshold, "low", "high")
            found += _levels(group, series, window) + _trend(group, series, window)
    return found


def _performance(group: _Group, members: list[FeedbackEntry], t: Thresholds, window: str) -> list[DetectedPattern]:
    entries = [e for e in members if e.type == "performance"]
    if not entries:
        return []
    series = _Series("performance", "performance", entries, t.performance_threshold, "slow", "fast")
    found = _levels(group, series, window) + _trend(group, series, window)
    regressions = [e for e in entries if e.details.get("regression")]
    if regressions:
        text = (f"{group.agent_id}'s code on {group.where} regressed in speed in {len(regressions)} of "
                f"{len(entries)} profiles {_suffix(group, window)}")
        found.append(_pattern("performance", group, "performance|regression", text, regressions, len(entries),
                              len(regressions) / len(entries), kind="regression", type="performance"))
    return found


# -- behavior -----------------------------------------------------------------------------


def _signature(e: FeedbackEntry) -> str | None:
    return e.details.get("signature") or e.get("rule")


def _behavior(group: _Group, members: list[FeedbackEntry], t: Thresholds, window: str) -> list[DetectedPattern]:
    by_run: dict[str, list[FeedbackEntry]] = {}
    for e in members:
        if e.type == "failure" and e.context.get("run_id"):
            by_run.setdefault(e.context["run_id"], []).append(e)
    retries: list[FeedbackEntry] = []
    repeats: list[FeedbackEntry] = []
    for failures in by_run.values():
        for before, after in zip(failures, failures[1:]):
            retries.append(after)
            if _signature(after) is not None and _signature(after) == _signature(before):
                repeats.append(after)
    if not repeats:
        return []
    labels = Counter(error_label(e.get("error_type"), e.get("rule")) for e in repeats)
    label = labels.most_common(1)[0][0]
    text = (f"{group.agent_id} repeats the same error after feedback on {group.where} {len(repeats)} of "
            f"{len(retries)} retries {_suffix(group, window)} (most often {label})")
    return [_pattern("behavior", group, "repeats_error", text, repeats, len(retries), len(repeats) / len(retries),
                     kind="repeats_error", label=label)]


_Detector = Callable[[_Group, list["FeedbackEntry"], Thresholds, str], list[DetectedPattern]]
_DETECTORS: tuple[_Detector, ...] = (_failures, _successes, _quality, _performance, _behavior)
