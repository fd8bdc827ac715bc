"""Where attempts run: ``local`` (this process, the default) or ``ray`` (a Ray cluster).

``base`` holds the seam (:class:`Executor`, :class:`AttemptJob`, :class:`LocalExecutor`);
``worker`` what a remote worker runs (no Ray import: testable without it); ``ray_executor``
the Ray side (placement by model slots, timeouts, events back to the coordinator);
``cluster`` node start and status for ``kisystem ray``.  Only ``base`` is imported here,
so the loop can use the seam without importing Ray or the worker code.
"""

from kisystem.executors.base import (
    EXECUTORS,
    RAY_INSTALL_HINT,
    AttemptJob,
    Executor,
    ExecutorError,
    LocalExecutor,
    RayMissing,
    require_ray,
)

__all__ = [
    "EXECUTORS",
    "RAY_INSTALL_HINT",
    "AttemptJob",
    "Executor",
    "ExecutorError",
    "LocalExecutor",
    "RayMissing",
    "require_ray",
]
