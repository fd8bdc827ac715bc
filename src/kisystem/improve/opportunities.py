"""Improvement opportunities: seed C's ten types, each with a concrete trigger on recorded data.

Every opportunity is about one agent (a model; None where none is to blame) and, where it
applies, one domain; the window is the health window (``health.lookback_days``, 7 days).
The thresholds are in the config's ``health`` section (``n`` = ``health.min_samples``, 3).

==========================  =========  =================================================================
type                        severity   fires when
==========================  =========  =================================================================
``success_rate_decline``    HIGH       a model's success rate in a domain (runs that tried it) dropped by
                                       more than ``decline_points`` (5) points from the previous window
                                       to this one, with >= n runs in each
``performance_degradation`` MEDIUM     a model's mean generation time in a domain is over its SLA (the
                                       inventory timeout x ``sla_fraction``), over >= n generations
``quality_issues``          HIGH       a model's mean ``quality_score`` feedback in a domain is below
                                       ``feedback.quality_threshold`` (0.8), over >= n scores
``tool_upgrade``            LOW        a backend offers a model the inventory lacks: ``new_model`` (a name
                                       no inventory model shares), or ``other_tag`` (another tag of an
                                       inventory model, e.g. ``qwen2.5-coder:3b`` beside ``:1.5b``;
                                       names carry no dates, so "newer" cannot be told from the list)
``resource_inefficiency``   MEDIUM     a measured memory > ``memory_mb`` (500) or CPU > ``cpu_percent``
                                       (80 % of the machine): a domain's build or test phase (its
                                       largest peak, its mean CPU), or an embedded server's peak memory
                                       beyond its weights and KV cache (:mod:`kisystem.improve.resources`)
``error_pattern``           HIGH       the feedback loop detects a failure pattern (one error recurring,
                                       frequency >= 3, confidence >= 0.6): one per model, domain, error
``capability_gap``          MEDIUM     >= n of a domain's runs ended ``exhausted`` (every model of its
                                       chain failed) and they are >= ``gap_share`` (half) of its runs
``training_needed``         LOW        a domain that has runs but no model with the meta-supervisor's
                                       evidence (>= 5 runs, routing/meta.py BIAS_MIN_RUNS), all time
``code_smell``              MEDIUM     >= n static-analysis reviews (``guardian`` quality_score) of a
                                       model's answers in a domain, ``smell_share`` (half) or more of
                                       them with findings (score < 1)
``security_vulnerability``  CRITICAL   a ``guardian`` security score below ``security_min`` (0.75: one
                                       HIGH or MEDIUM bandit finding, or three LOW ones)
==========================  =========  =================================================================
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from kisystem.config import OptimizationConfig
from kisystem.improve.health import HealthMonitor, RunRow, Tally
from kisystem.improve.plans import OPPORTUNITY_TYPES, Opportunity, Severity
from kisystem.improve.resources import ResourceSample
from kisystem.improve.resources import samples as measured
from kisystem.models.inventory import Inventory
from kisystem.routing.meta import BIAS_MIN_RUNS
from kisystem.store.learning import ModelEvidence

if TYPE_CHECKING:
    from kisystem.improve.feedback import FeedbackEntry
    from kisystem.improve.patterns import DetectedPattern

FINDINGS_KEPT = 3
_JUST_BEFORE = timedelta(microseconds=1)  # windows [since, end]: the last ends before this


@dataclass(frozen=True)
class Inputs:
    """Everything the triggers read, gathered once (see :func:`gather`)."""

    this_window: Mapping[tuple[str, str], Tally]
    last_window: Mapping[tuple[str, str], Tally]
    runs: Sequence[RunRow]  # this window's finished runs
    feedback: Sequence[FeedbackEntry]  # this window's quality_score and security entries
    patterns: Sequence[DetectedPattern]
    evidence: Sequence[ModelEvidence]  # all time
    sla: Mapping[str, tuple[float, float]]  # model -> (SLA s, timeout s)
    offered: Mapping[str, Sequence[str]] = field(default_factory=dict)  # endpoint -> model names
    resources: Sequence[ResourceSample] = ()


def gather(monitor: HealthMonitor, days: int | None = None, *, offered: Mapping[str, Sequence[str]] | None = None,
           resources: Sequence[ResourceSample] | None = None) -> Inputs:
    """The inputs from the learning database: this window and the one before it, the feedback, the
    patterns detected now (and stored), the all-time evidence, and the window's resource
    measurements (unless ``resources`` are given)."""
    days = days or monitor.settings.lookback_days
    since, until = monitor.window(days)
    feedback = monitor.feedback
    return Inputs(
        this_window=monitor.tallies(days), last_window=monitor.tallies(days, end=since - _JUST_BEFORE),
        runs=monitor.runs(since, until),
        feedback=feedback.entries(since=since, types=["quality_score", "security"]),
        patterns=feedback.detect_patterns(None, days), evidence=monitor.store.model_evidence(),
        sla={m: s for m in monitor.inventory.models if (s := monitor.sla(m)) is not None},
        offered=offered or {},
        resources=resources if resources is not None else measured(monitor.store, since, until,
                                                                    monitor.settings.min_samples),
    )  # fmt: skip


def find(inputs: Inputs, config: OptimizationConfig, inventory: Inventory,
         agent: str | None = None) -> list[Opportunity]:
    """Every opportunity the inputs show (of ``agent`` only, when given), most severe first."""
    found = [o for trigger in TRIGGERS.values() for o in trigger(inputs, config, inventory)]
    if agent is not None:
        found = [o for o in found if o.agent == agent]
    order = {t: i for i, t in enumerate(OPPORTUNITY_TYPES)}
    return sorted(found, key=lambda o: (-o.severity.rank, order[o.type], o.agent or "", o.domain or ""))


# -- the triggers ---------------------------------------------------------------------------


def success_rate_decline(inputs: Inputs, config: OptimizationConfig, inventory: Inventory) -> list[Opportunity]:
    s = config.health
    found = []
    for (model, domain), now in inputs.this_window.items():
        before = inputs.last_window.get((model, domain))
        if before is None or min(now.runs, before.runs) < s.min_samples:
            continue
        drop = round(100.0 * (before.success_rate - now.success_rate), 9)  # type: ignore[operator]  # 1 - 0.95 != 0.05
        if drop > s.decline_points:
            found.append(Opportunity("success_rate_decline", Severity.HIGH, model, domain, {
                "last_week": round(before.success_rate, 4), "this_week": round(now.success_rate, 4),  # type: ignore[arg-type]
                "runs_last_week": before.runs, "runs_this_week": now.runs, "drop_points": round(drop, 2)}))
    return found


def performance_degradation(inputs: Inputs, config: OptimizationConfig,
                            inventory: Inventory) -> list[Opportunity]:
    found = []
    for (model, domain), t in inputs.this_window.items():
        sla = inputs.sla.get(model)
        mean = t.mean_generation_s
        if sla is None or mean is None or t.generations < config.health.min_samples or mean <= sla[0]:
            continue
        found.append(Opportunity("performance_degradation", Severity.MEDIUM, model, domain, {
            "mean_generation_s": round(mean, 3), "sla_s": sla[0], "timeout_s": sla[1],
            "generations": t.generations}))
    return found


def quality_issues(inputs: Inputs, config: OptimizationConfig, inventory: Inventory) -> list[Opportunity]:
    bar = config.feedback.quality_threshold
    found = []
    for (model, domain), scores in _scores(inputs.feedback, "quality_score").items():
        mean = sum(e.score for e in scores) / len(scores)
        if len(scores) >= config.health.min_samples and mean < bar:
            found.append(Opportunity("quality_issues", Severity.HIGH, model, domain, {
                "mean_quality": round(mean, 4), "scores": len(scores), "threshold": bar}))
    return found


def tool_upgrade(inputs: Inputs, config: OptimizationConfig, inventory: Inventory) -> list[Opportunity]:
    names = set(inventory.models)
    by_base = {_base(n): n for n in sorted(names, reverse=True)}
    found = []
    for endpoint, offered in sorted(inputs.offered.items()):
        for name in sorted(set(offered) - names):
            installed = by_base.get(_base(name))
            kind = "other_tag" if installed else "new_model"
            evidence = {"endpoint": endpoint, "offered": name, "kind": kind, "installed": installed}
            found.append(Opportunity("tool_upgrade", Severity.LOW, installed, None, evidence))
    return found


def resource_inefficiency(inputs: Inputs, config: OptimizationConfig, inventory: Inventory) -> list[Opportunity]:
    s = config.health
    found = []
    for r in inputs.resources:
        over = {k: v for k, v, limit in (("memory_mb", r.memory_mb, s.memory_mb),
                                         ("cpu_percent", r.cpu_percent, s.cpu_percent))
                if v is not None and v > limit}
        if over:
            found.append(Opportunity("resource_inefficiency", Severity.MEDIUM, r.agent, r.domain, {
                "what": r.what, "part": r.part, **over, "limits": {"memory_mb": s.memory_mb, "cpu_percent": s.cpu_percent}}))
    return found


def error_pattern(inputs: Inputs, config: OptimizationConfig, inventory: Inventory) -> list[Opportunity]:
    best: dict[tuple[str, str | None, str], DetectedPattern] = {}
    for p in inputs.patterns:
        if p.pattern_type != "failure" or p.kind != "failure":
            continue
        key = (p.agent_id, p.domain, p.details.get("label", p.key))
        if key not in best or p.confidence > best[key].confidence:
            best[key] = p
    return [Opportunity("error_pattern", Severity.HIGH, p.agent_id, p.domain, {
        "pattern": p.description, "pattern_id": p.id, "error": p.details.get("label"),
        "frequency": p.frequency, "total": p.total, "confidence": p.confidence, "source": p.details.get("source")})
        for p in best.values()]


def capability_gap(inputs: Inputs, config: OptimizationConfig, inventory: Inventory) -> list[Opportunity]:
    s = config.health
    by_domain: dict[str, list[RunRow]] = defaultdict(list)
    for run in inputs.runs:
        by_domain[run.domain].append(run)
    found = []
    for domain, runs in sorted(by_domain.items()):
        exhausted = [r for r in runs if r.outcome == "exhausted"]
        share = len(exhausted) / len(runs)
        if len(exhausted) >= s.min_samples and share >= s.gap_share:
            last = Counter(r.model for r in exhausted).most_common(1)[0][0]
            tried = sorted({m for r in exhausted for m in r.tried})
            found.append(Opportunity("capability_gap", Severity.MEDIUM, last, domain, {
                "runs": len(runs), "exhausted": len(exhausted), "share": round(share, 4), "models_tried": tried}))
    return found


def training_needed(inputs: Inputs, config: OptimizationConfig, inventory: Inventory) -> list[Opportunity]:
    by_domain: dict[str, dict[str, int]] = defaultdict(dict)
    for e in inputs.evidence:
        by_domain[e.domain][e.model] = e.runs
    found = []
    for domain, runs in sorted(by_domain.items()):
        if max(runs.values(), default=0) >= BIAS_MIN_RUNS:
            continue
        start = inventory.routes[domain].start if domain in inventory.routes else max(runs, key=runs.get)
        found.append(Opportunity("training_needed", Severity.LOW, start, domain, {
            "runs": dict(sorted(runs.items())), "needed": BIAS_MIN_RUNS}))
    return found


def code_smell(inputs: Inputs, config: OptimizationConfig, inventory: Inventory) -> list[Opportunity]:
    s = config.health
    found = []
    for (model, domain), reviews in _scores(inputs.feedback, "quality_score", "guardian").items():
        smelly = [e for e in reviews if e.score < 1.0]
        share = len(smelly) / len(reviews)
        if len(reviews) >= s.min_samples and share >= s.smell_share:
            found.append(Opportunity("code_smell", Severity.MEDIUM, model, domain, {
                "reviews": len(reviews), "with_findings": len(smelly), "share": round(share, 4),
                "mean_quality": round(sum(e.score for e in reviews) / len(reviews), 4)}))
    return found


def security_vulnerability(inputs: Inputs, config: OptimizationConfig,
                           inventory: Inventory) -> list[Opportunity]:
    bar = config.health.security_min
    found = []
    for (model, domain), reviews in _scores(inputs.feedback, "security", "guardian").items():
        unsafe = [e for e in reviews if e.score < bar]
        if unsafe:
            findings = [f for e in unsafe for f in e.details.get("findings", [])][:FINDINGS_KEPT]
            found.append(Opportunity("security_vulnerability", Severity.CRITICAL, model, domain, {
                "reviews": len(reviews), "unsafe": len(unsafe), "worst": min(e.score for e in unsafe),
                "threshold": bar, "findings": findings, "operations": [e.operation_id for e in unsafe][-5:]}))
    return found


Trigger = Callable[[Inputs, OptimizationConfig, Inventory], list[Opportunity]]
TRIGGERS: dict[str, Trigger] = {
    "success_rate_decline": success_rate_decline, "performance_degradation": performance_degradation,
    "quality_issues": quality_issues, "tool_upgrade": tool_upgrade, "resource_inefficiency": resource_inefficiency,
    "error_pattern": error_pattern, "capability_gap": capability_gap, "training_needed": training_needed,
    "code_smell": code_smell, "security_vulnerability": security_vulnerability,
}  # fmt: skip
assert tuple(TRIGGERS) == OPPORTUNITY_TYPES


def describe(o: Opportunity) -> str:
    """One line saying what was found."""
    e, who = o.evidence, o.agent or "-"
    where = f" on {o.domain}" if o.domain else ""
    text = {
        "success_rate_decline": lambda: (f"{who}{where}: success rate {e['last_week']:.0%} -> {e['this_week']:.0%} "
                                         f"({e['runs_last_week']} -> {e['runs_this_week']} runs)"),
        "performance_degradation": lambda: (f"{who}{where}: mean generation {e['mean_generation_s']:g} s over the "
                                            f"SLA {e['sla_s']:g} s ({e['generations']} generations)"),
        "quality_issues": lambda: f"{who}{where}: mean quality {e['mean_quality']:.2f} < {e['threshold']:g} "
                                  f"({e['scores']} scores)",
        "tool_upgrade": lambda: (f"{e['endpoint']} offers {e['offered']}, not in the inventory"
                                 + (f" (another tag of {e['installed']})" if e.get("installed") else "")),
        "resource_inefficiency": lambda: f"{who}{where}: {e['what']} " + ", ".join(
            f"{k} {e[k]:g}" for k in ("memory_mb", "cpu_percent") if k in e),
        "error_pattern": lambda: str(e["pattern"]),
        "capability_gap": lambda: f"{o.domain}: {e['exhausted']} of {e['runs']} runs exhausted the whole chain",
        "training_needed": lambda: (f"{o.domain}: at most {max(e['runs'].values(), default=0)} runs per model, the "
                                    f"evidence gate needs {e['needed']}"),
        "code_smell": lambda: f"{who}{where}: {e['with_findings']} of {e['reviews']} reviewed answers have findings",
        "security_vulnerability": lambda: (f"{who}{where}: {e['unsafe']} of {e['reviews']} answers with security "
                                           f"findings" + (f" ({'; '.join(e['findings'])})" if e["findings"] else "")),
    }[o.type]  # fmt: skip
    return text()


def _scores(entries: Iterable[FeedbackEntry], type: str,
            source: str | None = None) -> dict[tuple[str, str | None], list[FeedbackEntry]]:
    out: dict[tuple[str, str | None], list[FeedbackEntry]] = defaultdict(list)
    for e in entries:
        if e.type == type and (source is None or e.source == source):
            out[(e.agent_id, e.domain)].append(e)
    return dict(out)


def _base(name: str) -> str:
    """A model's name without its tag: ``qwen2.5-coder`` of ``qwen2.5-coder:1.5b``."""
    return name.split(":", 1)[0]
