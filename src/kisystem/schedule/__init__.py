"""Scheduled optimization jobs (seed D, DESIGN decision 8): a durable scheduler in the learning
database, the five built-in jobs, third-party jobs from the ``kisystem.jobs`` entry points.

From Python (seed D's ``engine.register``)::

    from kisystem.schedule import OptimizationTask, register

    register(OptimizationTask("custom_optimization", "routing", "monthly", handler, "Custom optimization task"))

``kisystem schedule run`` (the daemon) and ``run-due`` then run it when due, as they do the
built-in jobs (:mod:`kisystem.schedule.jobs`) and those of installed packages
(:mod:`kisystem.schedule.registry`).  The scheduler itself is :mod:`kisystem.schedule.scheduler`.
"""

from kisystem.schedule.registry import ENTRY_POINT_GROUP, register, registered
from kisystem.schedule.tasks import TRIGGERS, JobContext, JobResult, OptimizationTask, interval_of

__all__ = ["ENTRY_POINT_GROUP", "TRIGGERS", "JobContext", "JobResult", "OptimizationTask", "interval_of", "register",
           "registered"]
