"""Token budget review (monthly): where the tokens and model-seconds went, against the budgets,
and whether answers were cut at ``max_tokens`` or prompts came near a model's context.

Over the last ``jobs.budget_window_days`` (30) it reads, for the runs that started then:

- per domain and model, the tokens (prompt + completion) and model-seconds (generation time)
  of every ``answer`` event (one per generation, see ``AttemptRunner.run``); a run recorded
  without answer events counts its ``runs`` row's tokens for the model it ended on;
- the budgets ``jobs.domain_token_budget`` / ``domain_model_seconds_budget`` (per domain) and
  ``model_token_budget`` / ``model_seconds_budget`` (per model); 0 is no budget;
- truncation: answers with ``finish_reason = "length"`` (cut at ``max_tokens``), per model,
  and how many of those iterations failed;
- context pressure: prompts of at least ``jobs.context_share`` (0.85) of the model's context
  (``ModelSpec.context_tokens``), plus the prompts the loop had to trim (``trim`` events).

A model with at least ``health.min_samples`` answers gets a plan for a larger ``max_tokens``
when ``jobs.truncation_share`` (10 %) or more of them were cut, counting only the answers
asked with its current budget (the largest recorded: answers asked before a budget was raised,
or shrunk to fit beside a long prompt, say nothing of it), and one for a larger
``num_ctx`` when as many of ``jobs.near_context_share`` (10 %) came near its context (or a
larger answer budget would not fit beside its prompts).  Such plans wait for approval: no
replay of recorded answers can show what a longer answer or a larger context would have
done, so a person decides; an approved plan sets the model's ``max_tokens`` / ``context_tokens``
in a new configuration version (:class:`kisystem.improve.plans.SetMaxTokens`,
:class:`~kisystem.improve.plans.SetContextTokens`), which the loop asks with and an embedded
model is served with.  An identical plan proposed within the window is not proposed again.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from kisystem.improve.plans import Opportunity, Plan, SetContextTokens, SetMaxTokens, Severity, Strategy
from kisystem.improve.versions import OptimizationStore
from kisystem.models.inventory import Inventory
from kisystem.schedule.jobs.common import (
    change_key,
    effective,
    iso,
    optimization_store,
    plan_json,
    planned_lately,
    share,
)
from kisystem.schedule.tasks import JobContext, JobResult

TOKEN_STEP = 64  # proposed budgets are multiples of this
GROWTH = 1.5  # a truncated model's answer budget grows by this factor
CONTEXT_HEADROOM = 1.25  # a proposed context holds the largest prompt plus the answer budget, and this much more

_RUNS = """
SELECT r.domain, r.model, r.tokens_prompt, r.tokens_completion,
    EXISTS (SELECT 1 FROM run_events e WHERE e.run_id = r.run_id AND e.kind = 'answer') AS answered
FROM runs r WHERE r.outcome != 'running' AND r.ts >= ? AND r.ts < ?
"""

_EVENTS = """
SELECT e.run_id, r.domain, e.kind, e.payload
FROM run_events e JOIN runs r ON r.run_id = e.run_id
WHERE e.kind IN ('answer', 'trim', 'score') AND r.outcome != 'running' AND r.ts >= ? AND r.ts < ?
ORDER BY e.id
"""


@dataclass
class Usage:
    """What one domain, model, or (domain, model) used."""

    runs: int = 0
    generations: int = 0
    tokens_prompt: int = 0
    tokens_completion: int = 0
    model_seconds: float = 0.0

    @property
    def tokens(self) -> int:
        return self.tokens_prompt + self.tokens_completion

    def to_dict(self) -> dict[str, Any]:
        return {"runs": self.runs, "generations": self.generations, "tokens_prompt": self.tokens_prompt,
                "tokens_completion": self.tokens_completion, "tokens": self.tokens,
                "model_seconds": round(self.model_seconds, 3)}


@dataclass
class Answers:
    """A model's answers in the window: sizes, limits and how they ended."""

    prompts: list[int] = field(default_factory=list)
    completions: list[int] = field(default_factory=list)
    max_tokens: list[int] = field(default_factory=list)
    cut_at: list[bool] = field(default_factory=list)  # per max_tokens entry: whether that answer was cut
    truncated: int = 0
    truncated_failed: int = 0
    trims: int = 0
    domains: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # domain -> truncated answers

    @property
    def n(self) -> int:
        return len(self.prompts)


@dataclass
class Review:
    usage: dict[tuple[str, str], Usage] = field(default_factory=lambda: defaultdict(Usage))
    answers: dict[str, Answers] = field(default_factory=lambda: defaultdict(Answers))
    runs: int = 0


def review_window(ctx: JobContext) -> Review:
    """Usage per (domain, model) and the answers per model of the runs started in the window."""
    now = ctx.clock()
    window = (iso(now - timedelta(days=ctx.config.jobs.budget_window_days)), iso(now + timedelta(microseconds=1)))
    review = Review()
    for domain, model, prompt, completion, answered in ctx.store.query(_RUNS, window):
        review.runs += 1
        use = review.usage[(domain, model)]
        use.runs += 1
        if not answered:  # recorded without answer events: the row's totals, for the model it ended on
            use.tokens_prompt += prompt
            use.tokens_completion += completion
    _read_events(ctx, review, window)
    return review


def _read_events(ctx: JobContext, review: Review, window: tuple[str, str]) -> None:
    open_answers: dict[tuple[str, Any], tuple[str, str, bool]] = {}  # (run, iteration) -> (model, domain, cut)
    for run_id, domain, kind, payload in ctx.store.query(_EVENTS, window):
        data = json.loads(payload)
        model = str(data.get("model") or "?")
        if kind == "trim":
            review.answers[model].trims += 1
        elif kind == "answer":
            cut = data.get("finish_reason") == "length"
            _count_answer(review, domain, model, data, cut)
            open_answers[(run_id, data.get("iteration"))] = (model, domain, cut)
        elif (found := open_answers.pop((run_id, data.get("iteration")), None)) and found[2] and data.get("error"):
            review.answers[found[0]].truncated_failed += 1


def _count_answer(review: Review, domain: str, model: str, data: dict[str, Any], cut: bool) -> None:
    prompt, completion = int(data.get("prompt_tokens") or 0), int(data.get("completion_tokens") or 0)
    use = review.usage[(domain, model)]
    use.generations += 1
    use.tokens_prompt += prompt
    use.tokens_completion += completion
    use.model_seconds += float(data.get("seconds") or 0.0)
    a = review.answers[model]
    a.prompts.append(prompt)
    a.completions.append(completion)
    if isinstance(data.get("max_tokens"), int):
        a.max_tokens.append(data["max_tokens"])
        a.cut_at.append(cut)
    if cut:
        a.truncated += 1
        a.domains[domain] += 1


# -- budgets ----------------------------------------------------------------------------------


def totals(review: Review, key: int) -> dict[str, Usage]:
    """Usage summed per domain (``key`` 0) or per model (1)."""
    out: dict[str, Usage] = defaultdict(Usage)
    for pair, use in review.usage.items():
        t = out[pair[key]]
        for name in ("runs", "generations", "tokens_prompt", "tokens_completion", "model_seconds"):
            setattr(t, name, getattr(t, name) + getattr(use, name))
    return dict(sorted(out.items()))


def over_budget(kind: str, usage: dict[str, Usage], tokens: int, seconds: float) -> list[dict[str, Any]]:
    found = []
    for name, use in usage.items():
        if tokens and use.tokens > tokens:
            found.append({kind: name, "what": "tokens", "used": use.tokens, "budget": tokens,
                          "share": round(use.tokens / tokens, 3)})
        if seconds and use.model_seconds > seconds:
            found.append({kind: name, "what": "model_seconds", "used": round(use.model_seconds, 3),
                          "budget": seconds, "share": round(use.model_seconds / seconds, 3)})
    return found


# -- truncation and context ---------------------------------------------------------------------


def percentile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] if ordered else 0


def _up(n: float, step: int = TOKEN_STEP) -> int:
    return int(math.ceil(n / step) * step)


def _pow2_at_least(n: float) -> int:
    return 1 << max(8, math.ceil(math.log2(max(n, 1))))


@dataclass(frozen=True)
class Finding:
    """A model's truncation and context figures, and what they call for (None: nothing)."""

    model: str
    figures: dict[str, Any]
    max_tokens: int | None = None  # the proposed answer budget
    num_ctx: int | None = None  # the proposed context


def assess(model: str, a: Answers, ctx: JobContext, inventory: Inventory) -> Finding:
    s, min_n = ctx.config.jobs, ctx.config.health.min_samples
    context = inventory.models[model].context_tokens if model in inventory.models else None
    current = max(a.max_tokens, default=0)
    at_current = [cut for asked, cut in zip(a.max_tokens, a.cut_at) if asked == current]
    near = sum(p >= s.context_share * context for p in a.prompts) if context else 0
    figures = {
        "generations": a.n, "truncated": a.truncated, "truncation_share": share(a.truncated, a.n),
        "truncated_and_failed": a.truncated_failed, "max_tokens": current or None,
        "asked_at_max_tokens": len(at_current), "truncated_at_max_tokens": sum(at_current),
        "completion_p50": percentile(a.completions, 0.5), "completion_p95": percentile(a.completions, 0.95),
        "prompt_p95": percentile(a.prompts, 0.95), "prompt_max": max(a.prompts, default=0),
        "context_tokens": context, "near_context": near, "trims": a.trims,
        "near_context_share": share(near + a.trims, a.n) if context else None,
    }  # fmt: skip
    if a.n < min_n:
        return Finding(model, figures)
    wanted = None
    if current and len(at_current) >= min_n and sum(at_current) / len(at_current) >= s.truncation_share:
        wanted = _up(current * GROWTH)
    cramped = bool(context) and (near + a.trims) / a.n >= s.near_context_share
    room = context - figures["prompt_p95"] if context else None
    if wanted is not None and room is not None and wanted > room:
        cramped = True  # a larger answer would not fit beside the prompts
    num_ctx = None
    if cramped and context:
        num_ctx = _pow2_at_least(max(context + 1, CONTEXT_HEADROOM * (figures["prompt_max"] + (wanted or current))))
    return Finding(model, figures, wanted, num_ctx)


def plans_of(finding: Finding, a: Answers) -> list[Plan]:
    f, m = finding.figures, finding.model
    evidence = {k: v for k, v in f.items() if v is not None}
    found = []
    if finding.max_tokens is not None:
        domain = max(a.domains, key=a.domains.get) if len(a.domains) == 1 else None
        opp = Opportunity("quality_issues", Severity.MEDIUM, m, domain,
                          {**evidence, "cause": "answers cut at max_tokens"})
        effect = (f"answers of {m} may run to {finding.max_tokens} tokens, not {f['max_tokens']}: {f['truncated']} of "
                  f"{f['generations']} were cut at max_tokens ({f['truncated_and_failed']} of those iterations failed)")
        found.append(Plan(opp, Strategy.AUTO, (SetMaxTokens(m, finding.max_tokens),), effect, "tasks_solved"))
    if finding.num_ctx is not None:
        opp = Opportunity("resource_inefficiency", Severity.MEDIUM, m, None,
                          {**evidence, "cause": "prompts near the context"})
        effect = (f"{m} gets a {finding.num_ctx}-token context, not {f['context_tokens']}: {f['near_context']} prompts "
                  f"came near it and {f['trims']} were trimmed, of {f['generations']}")
        found.append(Plan(opp, Strategy.AUTO, (SetContextTokens(m, finding.num_ctx),), effect, "tasks_solved"))
    return found


# -- the job ------------------------------------------------------------------------------------


def token_budget(ctx: JobContext) -> JobResult:
    s = ctx.config.jobs
    review = review_window(ctx)
    if not review.runs:
        return JobResult.skipped(f"no finished runs in the last {s.budget_window_days} days", runs=0)
    domains, models = totals(review, 0), totals(review, 1)
    over = (over_budget("domain", domains, s.domain_token_budget, s.domain_model_seconds_budget)
            + over_budget("model", models, s.model_token_budget, s.model_seconds_budget))
    with optimization_store(ctx) as store:
        inventory = effective(ctx, store)[1]  # an approved max_tokens / num_ctx plan is the model's own by now
        findings = [assess(m, a, ctx, inventory) for m, a in sorted(review.answers.items()) if a.n]
        stored, repeated = _propose(ctx, store, [p for f in findings for p in plans_of(f, review.answers[f.model])])
    return JobResult("success", {
        "window_days": s.budget_window_days, "runs": review.runs,
        "generations": sum(u.generations for u in domains.values()),
        "tokens": sum(u.tokens for u in domains.values()),
        "model_seconds": round(sum(u.model_seconds for u in domains.values()), 3),
        "by_domain": {d: u.to_dict() for d, u in domains.items()},
        "by_model": {m: u.to_dict() for m, u in models.items()},
        "by_domain_model": [{"domain": d, "model": m, **u.to_dict()} for (d, m), u in sorted(review.usage.items())],
        "budgets": {"domain_tokens": s.domain_token_budget, "domain_model_seconds": s.domain_model_seconds_budget,
                    "model_tokens": s.model_token_budget, "model_seconds": s.model_seconds_budget},
        "over_budget": over,
        "answers": {f.model: f.figures for f in findings},
        "plans": [plan_json(p) for p in stored], "already_proposed": repeated,
    })  # fmt: skip


def _propose(ctx: JobContext, store: OptimizationStore, proposed: list[Plan]) -> tuple[list[Plan], list[str]]:
    """Store the new plans, awaiting approval; an identical plan of the window is left out (described)."""
    seen = planned_lately(store, ctx.clock(), timedelta(days=ctx.config.jobs.budget_window_days))
    stored, repeated = [], []
    for plan in proposed:
        if change_key(plan) in seen:
            repeated.append(plan.describe())
            continue
        stored.append(store.add_plan(plan, "awaiting_approval"))
        seen.add(change_key(plan))
    return stored, repeated
