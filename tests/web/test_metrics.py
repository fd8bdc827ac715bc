"""/metrics parses with prometheus_client's own parser and says what the database holds; /healthz."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from kisystem.web.answers import Histogram
from tests.web.support import Seeded, client


def _scrape(c) -> dict:
    got = c.get("/metrics")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {f.name: f for f in text_string_to_metric_families(got.text)}


def _samples(family, name: str | None = None) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if name is None or s.name == name}


def test_metrics_families_and_values(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        families = _scrape(c)
    assert {name: f.type for name, f in families.items()} == {
        "kisystem_runs": "gauge", "kisystem_generation_seconds": "histogram",
        "kisystem_generation_completion_tokens": "histogram", "kisystem_queue_tasks": "gauge",
        "kisystem_health_score": "gauge", "kisystem_learning_db_schema_version": "gauge",
        # seed B's success metrics (tests/web/test_metrics_stats.py); nothing profiled, no queued task finished:
        # no profiling_time_saved_seconds, no queue_eta_replay_abs_error_ratio
        "kisystem_goal_value": "gauge", "kisystem_goal_target": "gauge", "kisystem_goal_met": "gauge",
        "kisystem_escalations": "counter", "kisystem_stoploss_triggers": "counter",
        "kisystem_escalated_runs": "counter", "kisystem_recovered_runs": "counter",
        "kisystem_model_solved_per_attempt": "gauge", "kisystem_model_solved_per_model_second": "gauge",
        "kisystem_queue_throughput_tasks_per_hour": "gauge", "kisystem_queue_wait_seconds_avg": "gauge",
        "kisystem_profiling_iterations": "gauge", "kisystem_stats_computed_timestamp_seconds": "gauge",
    }  # fmt: skip
    runs = _samples(families["kisystem_runs"])
    assert runs == {
        (("domain", "Python/General"), ("model", "big"), ("outcome", "success")): 2.0,
        (("domain", "C++/System"), ("model", "big"), ("outcome", "failed")): 1.0,
        (("domain", "Python/General"), ("model", "small"), ("outcome", "running")): 1.0,
    }
    seconds = families["kisystem_generation_seconds"]
    big, small = (("model", "big"),), (("model", "small"),)
    assert _samples(seconds, "kisystem_generation_seconds_count") == {big: 3.0, small: 1.0}
    assert _samples(seconds, "kisystem_generation_seconds_sum") == {big: 50.0, small: 4.0}
    buckets = _samples(seconds, "kisystem_generation_seconds_bucket")
    assert buckets[(("le", "10.0"), ("model", "big"))] == 1.0  # 8 s; 12 s and 30 s are above
    assert buckets[(("le", "30.0"), ("model", "big"))] == 3.0 and buckets[(("le", "+Inf"), ("model", "big"))] == 3.0
    tokens = families["kisystem_generation_completion_tokens"]
    assert _samples(tokens, "kisystem_generation_completion_tokens_sum")[(("model", "big"),)] == 1050.0
    queue = {k[0][1]: v for k, v in _samples(families["kisystem_queue_tasks"]).items()}
    assert (queue["queued"], queue["leased"], queue["cancelled"], queue["dead"]) == (1.0, 1.0, 1.0, 0.0)
    health = _samples(families["kisystem_health_score"])
    assert {k[0][1] for k in health} == {"big", "small"} and all(0 <= v <= 100 for v in health.values())
    assert _samples(families["kisystem_learning_db_schema_version"]) == {(): 12.0}


def test_histograms_grow_with_new_answers_only(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        before = _samples(_scrape(c)["kisystem_generation_seconds"], "kisystem_generation_seconds_count")
        assert _samples(_scrape(c)["kisystem_generation_seconds"], "kisystem_generation_seconds_count") == before
        seeded.db.store.append_event(seeded.ids["running"], "answer", {"iteration": 1, "model": "small",
                                                                        "seconds": 0.25, "completion_tokens": 9})
        seeded.db.store.append_event(seeded.ids["running"], "code", {"iteration": 1, "model": "small", "code": "x"})
        after = _scrape(c)["kisystem_generation_seconds"]
    assert _samples(after, "kisystem_generation_seconds_count")[(("model", "small"),)] == 2.0
    assert _samples(after, "kisystem_generation_seconds_bucket")[(("le", "0.5"), ("model", "small"))] == 1.0


def test_histogram_buckets_are_cumulative() -> None:
    h = Histogram((1, 10))
    for value in (0.5, 1, 3, 50):
        h.add(value)
    assert h.cumulative() == [("1.0", 2), ("10.0", 3), ("+Inf", 4)] and h.total == 54.5


def test_healthz(seeded: Seeded) -> None:
    with client(seeded.path) as c:
        got = c.get("/healthz")
    assert got.status_code == 200 and got.json() == {"status": "ok"}
