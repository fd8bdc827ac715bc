"""``/metrics``: the learning database in the Prometheus exposition format.

A custom collector reads the database on each scrape (nothing is cached between scrapes but the
answer fold's running histograms, see :mod:`kisystem.web.answers`):

- ``kisystem_runs{outcome,domain,model}``: runs by outcome, domain and the model they ended on (a
  gauge: a ``running`` run later moves to its final outcome);
- ``kisystem_generation_seconds`` and ``kisystem_generation_completion_tokens`` (histograms per
  model) from the loop's ``answer`` events;
- ``kisystem_queue_tasks{state}``: queue depth by state, every state listed;
- ``kisystem_health_score{agent}``: the newest health score (0-100) of each agent, with its window;
- ``kisystem_learning_db_schema_version``;
- seed B's success metrics (Phase 7 goals, escalations, queue efficiency, profiling time saved), kept up
  to 5 minutes since they replay all history: see :mod:`kisystem.web.metrics_stats`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from kisystem.web.answers import AnswerFold
from kisystem.web.db import DashboardDb
from kisystem.web.metrics_stats import StatsCollector
from kisystem.web.overview import queue_depth
from kisystem.web.stats_report import StatsSource

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_LATEST_HEALTH = "SELECT agent, score, days, MAX(id) FROM health_history GROUP BY agent ORDER BY agent"


class LearningCollector:
    """Families read from the learning database at each ``collect`` (one scrape)."""

    def __init__(self, db: DashboardDb, fold: AnswerFold) -> None:
        self.db = db
        self.fold = fold

    def collect(self) -> Iterator[Metric]:
        yield self._runs()
        yield from self._answers()
        queue = self._queue()
        if queue is not None:
            yield queue
        health = self._health()
        if health is not None:
            yield health
        version = GaugeMetricFamily("kisystem_learning_db_schema_version", "Schema version of the learning database")
        version.add_metric([], self.db.schema_version())
        yield version

    def _runs(self) -> Metric:
        family = GaugeMetricFamily("kisystem_runs", "Runs by outcome, domain and the model they ended on",
                                   labels=["outcome", "domain", "model"])
        for r in self.db.rows("SELECT outcome, domain, model, COUNT(*) FROM runs GROUP BY outcome, domain, model"):
            family.add_metric([r[0], r[1], r[2]], r[3])
        return family

    def _answers(self) -> Iterator[Metric]:
        seconds = HistogramMetricFamily("kisystem_generation_seconds", "Generation time of each model answer",
                                        labels=["model"])
        tokens = HistogramMetricFamily("kisystem_generation_completion_tokens",
                                       "Completion tokens of each model answer", labels=["model"])
        for model, answers in sorted(self.fold.update(self.db).items()):
            seconds.add_metric([model], answers.seconds.cumulative(), answers.seconds.total)
            tokens.add_metric([model], answers.tokens.cumulative(), answers.tokens.total)
        yield seconds
        yield tokens

    def _queue(self) -> Metric | None:
        depth = queue_depth(self.db)
        if depth is None:
            return None
        family = GaugeMetricFamily("kisystem_queue_tasks", "Queued tasks by state", labels=["state"])
        for state, n in depth.items():
            family.add_metric([state], n)
        return family

    def _health(self) -> Metric | None:
        if not self.db.has("health_history"):
            return None
        family = GaugeMetricFamily("kisystem_health_score", "Newest health score (0-100) of each agent",
                                   labels=["agent", "days"])
        for r in self.db.rows(_LATEST_HEALTH):
            family.add_metric([r[0], str(r[2])], r[1])
        return family


def metrics_registry(db: DashboardDb, fold: AnswerFold, stats: StatsSource | None = None) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(LearningCollector(db, fold))
    if stats is not None:
        registry.register(StatsCollector(stats))
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
