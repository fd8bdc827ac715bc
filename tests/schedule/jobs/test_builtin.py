"""The five built-in jobs and seed D's triggers."""

from __future__ import annotations

from datetime import timedelta

from kisystem.schedule import registry
from kisystem.schedule.jobs import builtin_tasks


def test_the_five_jobs_with_seed_d_triggers():
    tasks = {t.name: t for t in builtin_tasks()}
    assert {n: t.trigger for n, t in tasks.items()} == {
        "improvement_proposals": "continuous", "security_scan": "cve", "health_profiling": "bi-weekly",
        "token_budget": "monthly", "formula_tuning": "quarterly"}
    assert tasks["token_budget"].interval == timedelta(days=30)
    assert tasks["formula_tuning"].interval == timedelta(days=90)
    assert all(t.description for t in tasks.values())


def test_the_scheduler_registry_finds_them():
    assert [t.name for t in registry.builtin_tasks()] == [t.name for t in builtin_tasks()]
