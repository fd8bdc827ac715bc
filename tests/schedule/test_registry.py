"""Registering jobs: from Python, and third-party jobs found through the `kisystem.jobs` entry points."""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from kisystem.errors import UsageError
from kisystem.schedule import registry as registry_module
from kisystem.schedule.registry import ENTRY_POINT_GROUP, DuplicateJob, Registry, UnknownJob, load_entry_points
from kisystem.schedule.tasks import OptimizationTask
from tests.schedule.support import EXAMPLE_PKG, install_example


def _task(name: str, trigger: str = "monthly") -> OptimizationTask:
    return OptimizationTask(name, "tester", trigger, lambda ctx: {}, f"job {name}")


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example package as if installed: its module and its dist-info on sys.path."""
    monkeypatch.syspath_prepend(str(EXAMPLE_PKG))
    monkeypatch.syspath_prepend(str(install_example(tmp_path / "site")))
    monkeypatch.delitem(sys.modules, "kisystem_example_jobs", raising=False)
    return tmp_path / "site"


def test_duplicate_and_unknown_names_are_clear_errors() -> None:
    registry = Registry([_task("a"), _task("b")])
    with pytest.raises(DuplicateJob, match="a scheduled job named 'a' is registered already"):
        registry.register(_task("a", "cve"))
    with pytest.raises(UnknownJob, match="no scheduled job 'c'; known jobs: a, b"):
        registry.get("c")
    with pytest.raises(UsageError, match="a scheduled job is an OptimizationTask"):
        registry.register("not a task")  # type: ignore[arg-type]
    assert [t.name for t in registry.registered()] == ["a", "b"]


def test_bad_triggers_and_names_fail_at_registration() -> None:
    with pytest.raises(UsageError, match="unknown trigger 'weekly'"):
        _task("x", "weekly")
    with pytest.raises(UsageError, match="bad job name"):
        _task("has space")


def test_jobs_registered_from_python_join_the_default_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_DEFAULT", Registry())
    monkeypatch.setattr(registry_module, "builtin_tasks", lambda warn: [_task("builtin")])
    registry_module.register(_task("mine", "every:60"))
    assert [t.name for t in registry_module.registered()] == ["mine"]
    assert registry_module.default_registry(group="kisystem.no-such-group").names() == ["builtin", "mine"]
    with pytest.raises(DuplicateJob):
        registry_module.register(_task("mine"))


def test_the_example_package_is_found_through_its_entry_points(example: Path) -> None:
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    assert found["example-report"] == "kisystem_example_jobs:REPORT"  # from the dist-info, not an import
    registry = Registry([_task("a")])
    assert sorted(load_entry_points(registry, warn=pytest.fail)) == ["example-report", "example-slow"]
    assert registry.get("example-slow").trigger == "every:3600" and registry.get("example-report").agent == "example"


def test_a_broken_entry_point_is_one_warning_line_and_skipped(example: Path, tmp_path: Path) -> None:
    def boom() -> None:
        raise RuntimeError("plugin bug")

    sys.modules["kisystem_broken_jobs"] = type(sys)("kisystem_broken_jobs")
    sys.modules["kisystem_broken_jobs"].boom = boom  # type: ignore[attr-defined]
    broken = {"missing": "no_such_module_xyz:TASK", "wrong": "kisystem_example_jobs:SLEEP_ENV",
              "raises": "kisystem_broken_jobs:boom", "zz-dup": "kisystem_example_jobs:REPORT"}
    sys.path.insert(0, str(install_example(tmp_path / "broken", broken, name="kisystem_broken_jobs")))
    try:
        warnings: list[str] = []
        registry = Registry()
        assert sorted(load_entry_points(registry, warn=warnings.append)) == ["example-report", "example-slow"]
    finally:
        sys.path.remove(str(tmp_path / "broken"))
        del sys.modules["kisystem_broken_jobs"]
    assert len(warnings) == 4 and all("\n" not in w for w in warnings)
    by_name = {w.split()[3]: w for w in warnings}  # "kisystem.jobs entry point NAME = VALUE skipped: ..."
    assert "ModuleNotFoundError" in by_name["missing"]
    assert "gave str, not an OptimizationTask" in by_name["wrong"]
    assert "RuntimeError: plugin bug" in by_name["raises"]
    assert "'example-report' is taken" in by_name["zz-dup"]
