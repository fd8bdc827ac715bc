"""Formula tuning (quarterly): fit the loop's three formulas to the recorded history.

Over the runs of the last ``jobs.formula_history_days`` (90), each formula is scored on a
small grid by a replay of what was recorded, and the best is kept only if it beats the
current one (ties go to the setting closest to the current):

``meta_supervisor_weights`` (the priority P(d), DESIGN decision 1)
    Walking the runs in start order, knowing at each start only the runs finished before it
    (as ``MetaSupervisor.get_statistics`` replays them), P(d) of the run's domain is a
    prediction that the run needs attention.  Score: the AUC of P(d) against the run failing
    (the chance that a failed run had the higher priority than a solved one).  Grid: the
    weights in steps of 0.1 summing to 1 (286 points).
``hybrid_decision_weights`` (the capability floor, DESIGN decision 3)
    The routing replay (:class:`kisystem.improve.validate.ReplayValidator` with the loop's
    hybrid floor) of the recorded tasks whose specs are known (the queue stores them), from
    the learning database's history (:func:`kisystem.schedule.jobs.common.history_table`).
    Score: tasks solved, then fewer model-seconds.  Grid: steps of 0.1 summing to 1 (66).
``two_tier_profiling`` (DESIGN decision 5)
    The profiling replay: every recorded sequence of profiled iterations (the ``profile``
    events of a run, and the newest ``kisystem bench profiling`` result) replayed under the
    thresholds as ``TwoTierProfiler.should_full_profile`` decides (first profile,
    regression, score change, streak).  A full profile costs what it cost where one was
    recorded (else the run's, else the history's mean).  Score: fewest *stale* iterations
    (profiled at tier 0 only while the score moved more than ``jobs.profile_stale_points``
    (10) from the last full profile's), then fewest profiling seconds.

The weights and thresholds that beat the current ones become one plan (LOW), applied
copy-on-write (:func:`kisystem.improve.auto.apply_plan`) and validated by the same replays
(the priority's AUC for the meta-supervisor weights): kept when no replay gets worse and one
gets better, else rolled back.  With fewer than ``jobs.formula_min_runs`` (30) finished runs
the job is skipped.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, astuple, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from kisystem.bench.routing import OutcomeTable
from kisystem.config import HybridDecisionWeights, MetaSupervisorWeights, OptimizationConfig, TwoTierProfiling
from kisystem.improve.auto import Validation, apply_plan
from kisystem.improve.overlay import Configured
from kisystem.improve.plans import (
    Opportunity,
    Plan,
    SetHybridWeights,
    SetMetaWeights,
    SetTwoTierThresholds,
    Severity,
    Strategy,
)
from kisystem.improve.validate import ReplayFigures, ReplayValidator
from kisystem.loop.taskspec import TaskSpec
from kisystem.routing.meta import COUNT_SATURATION, recency_boost
from kisystem.schedule.jobs.common import (
    History,
    change_key,
    effective,
    history_table,
    iso,
    optimization_store,
    plan_json,
    planned_lately,
    queued_specs,
)
from kisystem.schedule.tasks import JobContext, JobResult
from kisystem.store.learning import ERROR_OUTCOMES, MODEL_EVIDENCE_OUTCOMES, RunTrail

GRID_STEPS = 10  # weights in tenths
AUC_GAIN = 0.01  # less than this is no better priority
MIN_EACH = 10  # failed and solved runs each, before the meta weights are fitted to them
SECONDS_GAIN = 0.01  # a profiling-time saving under 1 % is no better setting
THRESHOLDS = (2.5, 5.0, 7.5, 10.0, 15.0, 20.0)
STREAKS = (2, 3, 5, 8, 12)
MIN_PROFILED = 5  # profiled iterations the profiling replay needs
PROFILING_GLOB = "profiling-*.json"  # `kisystem bench profiling` results


def simplex(parts: int, steps: int = GRID_STEPS) -> list[tuple[float, ...]]:
    """Every split of 1 into ``parts`` weights in steps of 1/``steps``."""
    return [tuple(round(c / steps, 6) for c in combo)
            for combo in itertools.product(range(steps + 1), repeat=parts) if sum(combo) == steps]


def _distance(a: Sequence[float], b: Sequence[float]) -> float:
    return round(sum(abs(x - y) for x, y in zip(a, b)), 6)


# -- meta-supervisor weights: the priority as a predictor of failure -------------------------------


@dataclass(frozen=True)
class PriorityCase:
    """A run, with its domain's priority terms at its start (before weights) and whether it failed."""

    terms: tuple[float, float, float, float]  # 1 - sr, 1 / (1 + t), min(1, c / 20), R
    failed: bool


@dataclass
class _Domain:
    runs: int = 0
    successes: int = 0
    wall_sum: float = 0.0
    wall_n: int = 0
    last_error: datetime | None = None
    last_success: datetime | None = None

    def learn(self, run: RunTrail) -> None:
        self.runs += 1
        if run.outcome == "success":
            self.successes += 1
            self.last_success = _later(self.last_success, run.ts)
        elif run.outcome in ERROR_OUTCOMES:
            self.last_error = _later(self.last_error, run.ts)
        if run.wall_s is not None:
            self.wall_sum, self.wall_n = self.wall_sum + run.wall_s, self.wall_n + 1

    def terms(self, now: datetime) -> tuple[float, float, float, float]:
        t = self.wall_sum / self.wall_n if self.wall_n else None
        return (1 - self.successes / self.runs, 0.0 if t is None else 1 / (1 + t),
                min(1.0, self.runs / COUNT_SATURATION), recency_boost(self.last_error, self.last_success, now))


def _later(held: datetime | None, ts: datetime) -> datetime:
    return ts if held is None or ts > held else held


def priority_cases(trails: Sequence[RunTrail]) -> list[PriorityCase]:
    """Each run that says something about its models (success, failed, exhausted) and whose domain has
    earlier finished runs, with the priority terms known at its start."""
    domains: dict[str, _Domain] = defaultdict(_Domain)
    finishes = sorted(trails, key=lambda r: r.ended_ts)
    learned, cases = 0, []
    for run in trails:
        while learned < len(finishes) and finishes[learned].ended_ts < run.ts:
            domains[finishes[learned].domain].learn(finishes[learned])
            learned += 1
        d = domains.get(run.domain)
        if d is not None and d.runs and run.outcome in MODEL_EVIDENCE_OUTCOMES:
            cases.append(PriorityCase(d.terms(run.ts), run.outcome != "success"))
    return cases


def auc(scores: Sequence[float], failed: Sequence[bool]) -> float | None:
    """The chance that a failed case scores above a solved one (ties count half); None without both."""
    positives = sum(failed)
    negatives = len(failed) - positives
    if not positives or not negatives:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks, i = [0.0] * len(scores), 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, f in zip(ranks, failed) if f)
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


def priority_auc(cases: Sequence[PriorityCase], weights: Sequence[float]) -> float | None:
    scores = [round(sum(w * t for w, t in zip(weights, c.terms)), 12) for c in cases]
    return auc(scores, [c.failed for c in cases])


def fit_meta(cases: Sequence[PriorityCase], current: MetaSupervisorWeights) -> dict[str, Any]:
    now = tuple(asdict(current).values())
    failed = sum(c.failed for c in cases)
    if min(failed, len(cases) - failed) < MIN_EACH:
        return {"skipped": f"{failed} failed and {len(cases) - failed} solved runs to judge: a fitted AUC needs "
                           f"at least {MIN_EACH} of each (fewer fit noise)"}
    base = priority_auc(cases, now)
    scored = [(priority_auc(cases, w), w) for w in simplex(4)]
    best_auc, best = max(scored, key=lambda s: (round(s[0], 9), -_distance(s[1], now)))
    better = best_auc - base >= AUC_GAIN
    names = [f for f in asdict(current)]
    return {"cases": len(cases), "failed": sum(c.failed for c in cases), "grid": len(scored),
            "current": dict(zip(names, now)), "auc_current": round(base, 4),
            "best": dict(zip(names, best if better else now)), "auc_best": round(best_auc if better else base, 4),
            "better": better, "planned": better}


# -- hybrid weights: the routing replay ------------------------------------------------------------


def specs_table(table: OutcomeTable, specs: Mapping[str, TaskSpec]) -> OutcomeTable:
    """The table's tasks whose specs are known (the hybrid floor reads the task's text)."""
    tasks = [t for t in table.tasks if t in specs]
    return OutcomeTable({t: table.domains[t] for t in tasks}, dict(table.chains),
                        {t: table.samples[t] for t in tasks}, dict(table.meta))


def _figures(validator: ReplayValidator, configured: Configured) -> ReplayFigures:
    return validator.figures(*configured)


def fit_hybrid(validator: ReplayValidator, configured: Configured, ctx: JobContext) -> dict[str, Any]:
    config, inventory = configured
    now = tuple(asdict(config.hybrid_decision_weights).values())
    base = _figures(validator, configured)
    best, best_figures, tried = now, base, 0
    for w in simplex(3):
        if ctx.time_left() < 0:
            break
        figures = _figures(validator, (with_hybrid(config, w), inventory))
        tried += 1
        key = (figures.rank(), -_distance(w, now))
        if key > (best_figures.rank(), -_distance(best, now)):
            best, best_figures = w, figures
    names = list(asdict(config.hybrid_decision_weights))
    return {"tasks": base.tasks, "grid": tried, "current": dict(zip(names, now)), "current_figures": asdict(base),
            "best": dict(zip(names, best)), "best_figures": asdict(best_figures),
            "better": best_figures.rank() > base.rank()}


def with_hybrid(config: OptimizationConfig, weights: Sequence[float]) -> OptimizationConfig:
    return replace(config, hybrid_decision_weights=HybridDecisionWeights(*weights))


# -- two-tier thresholds: the profiling replay -----------------------------------------------------


@dataclass(frozen=True)
class Profiled:
    """One recorded profiled iteration."""

    iteration: int
    score: float
    regression: bool
    tier0_s: float
    tier1_s: float | None  # None: no full profile was recorded for it


@dataclass(frozen=True)
class ProfilingFigures:
    iterations: int
    full: int
    stale: int
    seconds: float

    def key(self) -> tuple[int, float]:
        """Smaller is better: fewer stale profiles, then fewer seconds."""
        return self.stale, self.seconds

    def beats(self, other: ProfilingFigures) -> bool:
        if self.stale != other.stale:
            return self.stale < other.stale
        return self.seconds < other.seconds * (1 - SECONDS_GAIN)


_PROFILES = """
SELECT e.run_id, e.payload FROM run_events e JOIN runs r ON r.run_id = e.run_id
WHERE e.kind = 'profile' AND r.ts >= ? ORDER BY e.id
"""


def profiled_runs(ctx: JobContext, since: datetime) -> list[list[Profiled]]:
    """Every run's profiled iterations (with a score), and the newest profiling benchmark's always-full arm."""
    runs: dict[str, list[Profiled]] = defaultdict(list)
    for run_id, payload in ctx.store.query(_PROFILES, (iso(since),)):
        found = _profiled(json.loads(payload))
        if found is not None:
            runs[run_id].append(found)
    return [seq for seq in runs.values() if seq] + _bench_profiles(ctx.paths.home)


def _profiled(data: Mapping[str, Any], iteration: int | None = None) -> Profiled | None:
    if data.get("error") or not isinstance(data.get("score"), (int, float)):
        return None
    tier1 = float(data.get("tier1_s") or 0.0) if data.get("tier") == 1 else None
    return Profiled(int(iteration if iteration is not None else data.get("iteration") or 0), float(data["score"]),
                    bool(data.get("regression")), float(data.get("tier0_s") or 0.0), tier1)


def _bench_profiles(home: Path) -> list[list[Profiled]]:
    found = sorted((home / "bench").glob(PROFILING_GLOB), key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        try:
            rows = json.loads(path.read_text())["rows"]
            seq = [_profiled(r["always_full"], r["iteration"]) for r in rows]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        return [[p for p in seq if p is not None]]
    return []


def replay_profiles(runs: Iterable[Sequence[Profiled]], settings: TwoTierProfiling,
                    stale_points: float) -> ProfilingFigures:
    runs = list(runs)
    recorded = [p.tier1_s for seq in runs for p in seq if p.tier1_s is not None]
    fallback = sum(recorded) / len(recorded) if recorded else 0.0
    parts = [_replay_run(seq, settings, stale_points, fallback) for seq in runs]
    return ProfilingFigures(sum(p.iterations for p in parts), sum(p.full for p in parts),
                            sum(p.stale for p in parts), round(sum(p.seconds for p in parts), 3))


def _replay_run(seq: Sequence[Profiled], s: TwoTierProfiling, stale_points: float,
                fallback: float) -> ProfilingFigures:
    own = [p.tier1_s for p in seq if p.tier1_s is not None]
    full_cost = sum(own) / len(own) if own else fallback
    last_full = last_score = base = None
    full = stale = 0
    seconds = 0.0
    for p in seq:
        change = p.score - last_score if last_score is not None else 0.0
        profile = (last_full is None or p.regression or abs(change) > s.score_change_threshold
                   or p.iteration - last_full > s.max_tier0_streak)
        seconds += p.tier0_s
        if profile:
            full += 1
            seconds += p.tier1_s if p.tier1_s is not None else full_cost
            last_full, base = p.iteration, p.score
        elif base is not None and abs(p.score - base) > stale_points:
            stale += 1
        last_score = p.score
    return ProfilingFigures(len(seq), full, stale, seconds)


def fit_two_tier(runs: Sequence[Sequence[Profiled]], current: TwoTierProfiling, stale_points: float,
                 ) -> dict[str, Any]:  # fmt: skip
    now = (current.score_change_threshold, current.max_tier0_streak)
    base = replay_profiles(runs, current, stale_points)
    best, best_figures = now, base
    grid = sorted(set(itertools.product((*THRESHOLDS, now[0]), (*STREAKS, now[1]))))
    for t, k in grid:
        figures = replay_profiles(runs, TwoTierProfiling(t, k), stale_points)
        if (figures.key(), _distance((t, k), now)) < (best_figures.key(), _distance(best, now)):
            best, best_figures = (t, k), figures
    better = best_figures.beats(base)
    return {"runs": len(runs), "iterations": base.iterations, "grid": len(grid), "stale_points": stale_points,
            "current": {"score_change_threshold": now[0], "max_tier0_streak": now[1]},
            "current_figures": asdict(base),
            "best": {"score_change_threshold": best[0], "max_tier0_streak": best[1]} if better else None,
            "best_figures": asdict(best_figures), "better": better}


# -- the plan and its validation -------------------------------------------------------------------


METRIC = ("routing replay (tasks solved, then model-seconds), profiling replay (stale profiles, then seconds) "
          "and the priority's AUC")


@dataclass(frozen=True)
class FormulaValidator:
    """Before against after on every replay: better when none is worse and one is better."""

    routing: ReplayValidator | None
    profiles: Sequence[Sequence[Profiled]]
    stale_points: float
    priority: Sequence[PriorityCase] = ()

    def __call__(self, before: Configured, after: Configured) -> Validation:
        was, now, notes = {}, {}, []
        better = worse = False
        a0 = priority_auc(self.priority, astuple(before[0].meta_supervisor_weights)) if self.priority else None
        a1 = priority_auc(self.priority, astuple(after[0].meta_supervisor_weights)) if self.priority else None
        if a0 is not None and a1 is not None:
            was["priority_auc"], now["priority_auc"] = round(a0, 4), round(a1, 4)
            better, worse = a1 - a0 >= AUC_GAIN, a0 - a1 >= AUC_GAIN
            notes.append(f"priority of {len(self.priority)} runs: AUC {a0:.4f} -> {a1:.4f}")
        if self.routing is not None:
            r0, r1 = _figures(self.routing, before), _figures(self.routing, after)
            was.update(solved=r0.solved, model_seconds=r0.model_seconds)
            now.update(solved=r1.solved, model_seconds=r1.model_seconds)
            better, worse = better or r1.rank() > r0.rank(), worse or r1.rank() < r0.rank()
            notes.append(f"routing replay of {r0.tasks} tasks: solved {r0.solved} -> {r1.solved}, "
                         f"model-seconds {r0.model_seconds:g} -> {r1.model_seconds:g}")
        if self.profiles:
            p0 = replay_profiles(self.profiles, before[0].two_tier_profiling, self.stale_points)
            p1 = replay_profiles(self.profiles, after[0].two_tier_profiling, self.stale_points)
            was.update(stale_profiles=p0.stale, profiling_s=p0.seconds)
            now.update(stale_profiles=p1.stale, profiling_s=p1.seconds)
            better, worse = better or p1.beats(p0), worse or p0.beats(p1)
            notes.append(f"profiling replay of {p0.iterations} iterations: stale {p0.stale} -> {p1.stale}, "
                         f"seconds {p0.seconds:g} -> {p1.seconds:g}")
        return Validation(METRIC, was, now, better and not worse, "; ".join(notes) or "nothing to replay")


def _plan(hybrid: Mapping[str, Any] | None, two_tier: Mapping[str, Any] | None, evidence: Mapping[str, Any],
          meta: Mapping[str, Any] | None = None) -> Plan | None:
    changes, effects = [], []
    if meta and meta.get("better"):
        changes.append(SetMetaWeights(*meta["best"].values()))
        effects.append(f"the priority P(d) as fitted: over {meta['cases']} runs, the chance that a failed run had "
                       f"the higher priority than a solved one {meta['auc_current']:g} -> {meta['auc_best']:g}")
    if hybrid and hybrid.get("better"):
        changes.append(SetHybridWeights(*hybrid["best"].values()))
        was, now = hybrid["current_figures"], hybrid["best_figures"]
        effects.append(f"the hybrid floor as fitted: {was['solved']} -> {now['solved']} of {hybrid['tasks']} replayed "
                       f"tasks solved in {was['model_seconds']:g} -> {now['model_seconds']:g} model-seconds")
    if two_tier and two_tier.get("better"):
        best = two_tier["best"]
        changes.append(SetTwoTierThresholds(best["score_change_threshold"], best["max_tier0_streak"]))
        was, now = two_tier["current_figures"], two_tier["best_figures"]
        effects.append(f"over the recorded profiles: {was['stale']} -> {now['stale']} stale, profiling "
                       f"{was['seconds']:g} -> {now['seconds']:g} s")
    if not changes:
        return None
    solves_more = bool(hybrid and hybrid.get("better")
                       and hybrid["best_figures"]["solved"] > hybrid["current_figures"]["solved"])
    kind = "capability_gap" if solves_more else "resource_inefficiency"
    opp = Opportunity(kind, Severity.LOW, "formulas", None, dict(evidence))
    return Plan(opp, Strategy.AUTO, tuple(changes), "; ".join(effects),
                "tasks_solved" if solves_more else "model_seconds")


# -- the job ---------------------------------------------------------------------------------------


def formula_tuning(ctx: JobContext) -> JobResult:
    s = ctx.config.jobs
    since = ctx.clock() - timedelta(days=s.formula_history_days)
    trails = [t for t in ctx.store.run_trails() if t.ts >= since]
    judged = [t for t in trails if t.outcome in MODEL_EVIDENCE_OUTCOMES]
    if len(judged) < s.formula_min_runs:
        return JobResult.skipped(f"{len(judged)} finished runs in the last {s.formula_history_days} days; formula "
                                 f"tuning needs at least {s.formula_min_runs}", runs=len(judged),
                                 needed=s.formula_min_runs)
    with optimization_store(ctx) as store:
        configured = effective(ctx, store)
        history = history_table(ctx.store, configured[1], since)
        routing, hybrid = _hybrid_part(ctx, history, configured)
        profiles = profiled_runs(ctx, since)
        two_tier = _two_tier_part(profiles, configured[0], s.profile_stale_points)
        cases = priority_cases(trails)
        meta = fit_meta(cases, configured[0].meta_supervisor_weights)
        result = {"history": {"days": s.formula_history_days, "runs": len(judged), "needed": s.formula_min_runs,
                              "tasks": len(history.table.tasks), "samples": history.samples,
                              "profiled_runs": len(profiles)},
                  "meta_supervisor_weights": meta, "hybrid_decision_weights": hybrid, "two_tier_profiling": two_tier}
        plan = _plan(hybrid, two_tier, {"job": "formula_tuning", "history_runs": len(judged)}, meta)
        result["plan"] = _apply(ctx, store, plan, FormulaValidator(
            routing, profiles if two_tier.get("better") else (), s.profile_stale_points,
            cases if meta.get("better") else ()))
    return JobResult("success", result)


def _hybrid_part(ctx: JobContext, history: History,
                 configured: Configured) -> tuple[ReplayValidator | None, dict[str, Any]]:
    specs = queued_specs(ctx.store, configured[1], history.table.tasks)
    table = specs_table(history.table, specs)
    if not table.tasks:
        return None, {"skipped": f"none of the {len(history.table.tasks)} recorded tasks has a stored spec (the "
                                 "queue keeps them): the hybrid floor cannot be replayed"}
    validator = ReplayValidator(table, specs)
    return validator, fit_hybrid(validator, configured, ctx)


def _two_tier_part(profiles: Sequence[Sequence[Profiled]], config: OptimizationConfig,
                   stale_points: float) -> dict[str, Any]:
    iterations = sum(len(seq) for seq in profiles)
    if iterations < MIN_PROFILED:
        return {"skipped": f"{iterations} profiled iterations recorded; the profiling replay needs {MIN_PROFILED}"}
    if not any(p.tier1_s is not None for seq in profiles for p in seq):
        return {"skipped": "no full profile recorded: its cost is unknown"}
    return fit_two_tier(profiles, config.two_tier_profiling, stale_points)


def _apply(ctx: JobContext, store: Any, plan: Plan | None, validator: FormulaValidator) -> dict[str, Any] | None:
    if plan is None:
        return None
    if change_key(plan) in planned_lately(store, ctx.clock(), timedelta(hours=ctx.config.jobs.proposal_cooldown_hours)):
        return {"summary": plan.describe(), "status": "not proposed again: the same plan was decided lately"}
    outcome = apply_plan(store, ctx.config, ctx.inventory, store.add_plan(plan), validator, ctx.log)
    result = outcome.result
    return {**plan_json(outcome.plan), "kept": outcome.kept,
            "detail": result.detail if result else None, "before": dict(result.before) if result else {},
            "after": dict(result.after) if result else {}}
