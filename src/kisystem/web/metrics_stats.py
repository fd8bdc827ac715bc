"""Seed B's success metrics in ``/metrics`` (all history, from :class:`~kisystem.web.stats_report.StatsSource`).

- ``kisystem_goal_value{goal}``, ``kisystem_goal_target{goal,bound}`` (``low``; ``high`` for a range),
  ``kisystem_goal_met{goal}`` (1 met, 0 not met or above its range): the guide's Phase 7 goals as ratios
  (0.7 is 70 %); a goal without data has no value and no ``met`` sample, only its target;
- ``kisystem_escalations_total{domain}``, ``kisystem_stoploss_triggers_total{domain}``,
  ``kisystem_escalated_runs_total{domain}``, ``kisystem_recovered_runs_total{domain}`` (counters);
- ``kisystem_model_solved_per_attempt{domain,model}``, ``kisystem_model_solved_per_model_second{domain,model}``;
- ``kisystem_queue_throughput_tasks_per_hour``, ``kisystem_queue_wait_seconds_avg``,
  ``kisystem_queue_eta_replay_abs_error_ratio`` (ROI accuracy, replayed: see :mod:`kisystem.stats.efficiency`);
- ``kisystem_profiling_time_saved_seconds``, ``kisystem_profiling_iterations{tier}``;
- ``kisystem_stats_computed_timestamp_seconds``: when these were computed (kept up to 5 minutes: see
  :mod:`kisystem.web.stats_report`).

A figure the database cannot give yet is left out rather than exported as 0 (the stats' own rule), and a
family without samples is left out with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from kisystem.stats import StatsReport, goals
from kisystem.stats.profiling import saved_ratio
from kisystem.web.stats_report import StatsSource

TARGETS = {"Model Selection Accuracy": goals.SELECTION, "Profiling Time Reduction": goals.PROFILING,
           "Task Efficiency": goals.EFFICIENCY, "Error Recovery": goals.RECOVERY}  # fmt: skip
_ESCALATION_COUNTERS = (
    ("kisystem_escalations", "escalations", "Escalations to another model, per domain"),
    ("kisystem_stoploss_triggers", "stoploss_triggers", "Times a model's stop-loss fired, per domain"),
    ("kisystem_escalated_runs", "escalated_runs", "Runs escalated after a failed iteration, per domain"),
    ("kisystem_recovered_runs", "recovered", "Runs escalated after a failure and then solved, per domain"),
)


def goal_label(metric: str) -> str:
    """``Model Selection Accuracy`` -> ``model_selection_accuracy``."""
    return "_".join(metric.lower().split())


class StatsCollector:
    """The stats families of one scrape; none while the report cannot be read (its error is on /stats)."""

    def __init__(self, source: StatsSource) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        computed = self.source.report(None)
        if computed.report is None:
            return
        yield from families(computed.report)
        stamp = GaugeMetricFamily("kisystem_stats_computed_timestamp_seconds",
                                  "When the success metrics were computed (unix seconds)")
        stamp.add_metric([], computed.at.timestamp())
        yield stamp


def families(report: StatsReport) -> Iterator[Metric]:
    """Every family with at least one sample (a database without escalations has no escalation families)."""
    for family in (*_goals(report.goals), *_escalations(report), *_queue(report), *_profiling(report)):
        if family.samples:
            yield family


def _goals(table: Iterable[goals.Goal]) -> Iterator[Metric]:
    value = GaugeMetricFamily("kisystem_goal_value", "Phase 7 goal, measured (a ratio: 0.7 is 70%)", labels=["goal"])
    target = GaugeMetricFamily("kisystem_goal_target", "Phase 7 goal's target (low bound; high for a range)",
                               labels=["goal", "bound"])
    met = GaugeMetricFamily("kisystem_goal_met", "1 when the goal is met, 0 when not (or above its range)",
                            labels=["goal"])
    for g in table:
        aim = TARGETS.get(g.metric)
        if aim is None:  # "Learning Speed": a property of the design, not a figure
            continue
        label = goal_label(g.metric)
        target.add_metric([label, "low"], aim.low)
        if aim.high is not None:
            target.add_metric([label, "high"], aim.high)
        if g.value is not None:
            value.add_metric([label], g.value)
            met.add_metric([label], 1.0 if g.status == goals.MET else 0.0)
    yield from (value, target, met)


def _escalations(report: StatsReport) -> Iterator[Metric]:
    domains = report.escalation.domains
    for name, attr, doc in _ESCALATION_COUNTERS:
        family = CounterMetricFamily(name, doc, labels=["domain"])
        for d in domains:
            family.add_metric([d.domain], getattr(d, attr))
        yield family
    per_attempt = GaugeMetricFamily("kisystem_model_solved_per_attempt", "Runs solved per attempt of the model",
                                    labels=["domain", "model"])
    per_second = GaugeMetricFamily("kisystem_model_solved_per_model_second",
                                   "Runs solved per second of the model's generation time", labels=["domain", "model"])
    for d in domains:
        for m in d.models:
            if m.solved_per_attempt is not None:
                per_attempt.add_metric([d.domain, m.model], m.solved_per_attempt)
            if m.solved_per_model_s is not None:
                per_second.add_metric([d.domain, m.model], m.solved_per_model_s)
    yield from (per_attempt, per_second)


def _queue(report: StatsReport) -> Iterator[Metric]:
    e = report.efficiency
    figures = (
        ("kisystem_queue_throughput_tasks_per_hour", "Queued tasks finished per hour (all history)",
         e.throughput_per_h),
        ("kisystem_queue_wait_seconds_avg", "Average wait of a queued task before its first lease", e.avg_wait_s),
        ("kisystem_queue_eta_replay_abs_error_ratio",
         "Mean |ETA - actual| / actual of finished tasks (the ETA estimator replayed)", e.roi.mean_abs_error),
    )  # fmt: skip
    for name, doc, value in figures:
        if value is not None:
            yield _gauge(name, doc, value)


def _profiling(report: StatsReport) -> Iterator[Metric]:
    p = report.profiling
    if saved_ratio(p) is not None:
        yield _gauge("kisystem_profiling_time_saved_seconds",
                     "Profiling time two-tier profiling saved against always profiling fully (estimated)", p.saved_s)
    tiers = GaugeMetricFamily("kisystem_profiling_iterations", "Profiled iterations by tier", labels=["tier"])
    tiers.add_metric(["0"], p.tier0_count)
    tiers.add_metric(["1"], p.tier1_count)
    yield tiers


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc)
    family.add_metric([], value)
    return family
