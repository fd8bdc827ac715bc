"""Which jobs exist: the built-in five, jobs registered from Python, and third-party jobs.

Third-party packages add jobs through the entry-point group ``kisystem.jobs``.  An entry
point loads to an :class:`OptimizationTask`, or to a callable returning one or a list of
them; in the package's ``pyproject.toml``::

    [project.entry-points."kisystem.jobs"]
    nightly-report = "my_package.jobs:NIGHTLY"      # an OptimizationTask
    more = "my_package.jobs:tasks"                  # def tasks() -> list[OptimizationTask]

(``tests/schedule/example_job_pkg`` is a working example.)  A broken entry point (it does
not import, raises, returns something else, or repeats a job name) is logged in one line
and skipped: one bad plugin must not stop the scheduler or the CLI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from importlib.metadata import EntryPoint, entry_points

from kisystem.errors import UsageError
from kisystem.schedule.tasks import OptimizationTask

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "kisystem.jobs"

Warn = Callable[[str], None]


class DuplicateJob(UsageError):
    """A job with this name is registered already."""


class UnknownJob(UsageError):
    """No job has this name."""


class Registry:
    """Jobs by name, in the order they were registered."""

    def __init__(self, tasks: Iterable[OptimizationTask] = ()) -> None:
        self._tasks: dict[str, OptimizationTask] = {}
        for task in tasks:
            self.register(task)

    def register(self, task: OptimizationTask) -> OptimizationTask:
        """Add ``task``; a name already taken is an error (names key the schedule and the history)."""
        if not isinstance(task, OptimizationTask):
            raise UsageError(f"cannot register {task!r}: a scheduled job is an OptimizationTask")
        if task.name in self._tasks:
            raise DuplicateJob(f"a scheduled job named {task.name!r} is registered already "
                               f"({self._tasks[task.name].description or self._tasks[task.name].agent})")
        self._tasks[task.name] = task
        return task

    def registered(self) -> list[OptimizationTask]:
        return list(self._tasks.values())

    def names(self) -> list[str]:
        return list(self._tasks)

    def get(self, name: str) -> OptimizationTask:
        try:
            return self._tasks[name]
        except KeyError:
            raise UnknownJob(f"no scheduled job {name!r}; known jobs: {', '.join(self._tasks) or 'none'}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def __len__(self) -> int:
        return len(self._tasks)


_DEFAULT = Registry()


def register(task: OptimizationTask) -> OptimizationTask:
    """Register ``task`` for every scheduler this process makes with :func:`default_registry` afterwards."""
    return _DEFAULT.register(task)


def registered() -> list[OptimizationTask]:
    """The jobs registered from Python with :func:`register` (not the built-in or entry-point ones)."""
    return _DEFAULT.registered()


def builtin_tasks(warn: Warn = log.warning) -> list[OptimizationTask]:
    """The five built-in jobs (seed D, DESIGN decision 8); none, with a warning, in a build without them."""
    try:  # imported late: the jobs pull in the whole engine
        from kisystem.schedule.jobs import builtin_tasks as make
    except ImportError as err:  # only a missing kisystem.schedule.jobs or builtin_tasks; a broken one fails loudly
        if err.name != "kisystem.schedule.jobs":
            raise
        warn("the built-in scheduled jobs are missing from this installation (kisystem.schedule.jobs)")
        return []
    return list(make())


def default_registry(*, warn: Warn = log.warning, group: str = ENTRY_POINT_GROUP) -> Registry:
    """The built-in jobs, those registered from Python, then every job of the ``kisystem.jobs`` entry points."""
    registry = Registry(builtin_tasks(warn))
    for task in registered():
        registry.register(task)
    load_entry_points(registry, group=group, warn=warn)
    return registry


def load_entry_points(registry: Registry, *, group: str = ENTRY_POINT_GROUP, warn: Warn = log.warning) -> list[str]:
    """Register the jobs of every entry point in ``group``; return their names.  A broken one is warned
    about in one line and skipped."""
    added: list[str] = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        try:
            tasks = _tasks_of(ep)
            for task in tasks:  # all or nothing per entry point: checked before any is added
                if task.name in registry or sum(t.name == task.name for t in tasks) > 1:
                    raise DuplicateJob(f"job name {task.name!r} is taken")
            for task in tasks:
                added.append(registry.register(task).name)
        except Exception as err:  # a third party's bug, whatever it is: one line, and the others still load
            warn(f"{group} entry point {ep.name} = {ep.value} skipped: {type(err).__name__}: {err}")
    return added


def _tasks_of(ep: EntryPoint) -> list[OptimizationTask]:
    obj = ep.load()
    if callable(obj) and not isinstance(obj, OptimizationTask):
        obj = obj()
    tasks = [obj] if isinstance(obj, OptimizationTask) else list(obj) if isinstance(obj, list | tuple) else None
    if tasks is None or not all(isinstance(t, OptimizationTask) for t in tasks):
        raise TypeError(f"it gave {type(obj).__name__}, not an OptimizationTask or a list of them")
    return tasks
