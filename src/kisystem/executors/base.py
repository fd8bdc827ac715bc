"""The executor seam: where one attempt's work (generate -> build -> test -> profile) runs.

The supervisor decides *what* to try (model, prompt, feedback); an executor decides *where*
the try runs.  :class:`LocalExecutor` runs it in this process, exactly as the loop always
did.  :class:`~kisystem.executors.ray_executor.RayExecutor` runs it as a Ray task on a node
that serves the model, and hands the answer, the scored attempt and the events back: the
coordinator stays the only writer of the learning and queue databases.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kisystem.errors import KisystemError, UsageError

if TYPE_CHECKING:
    from kisystem.loop.attempt import Attempt
    from kisystem.loop.prompts import Feedback
    from kisystem.loop.supervisor import Supervisor
    from kisystem.loop.taskspec import TaskSpec

Emit = Callable[..., None]  # emit(kind, **data): one run event; ``persist=False`` keeps it out of the store
EXECUTORS = ("local", "ray")
RAY_INSTALL_HINT = "pip install 'kisystem[ray]'"


class ExecutorError(KisystemError):
    """An attempt's work was lost where it ran (a worker or node died, it timed out): the run
    is recorded as an error and the queue runs the task again."""


class RayMissing(UsageError):
    """``--executor ray`` without Ray installed."""

    def __init__(self) -> None:
        super().__init__(f"the ray executor needs Ray: {RAY_INSTALL_HINT}")


@dataclass(frozen=True)
class AttemptJob:
    """One iteration's work order: everything the supervisor knows before it asks the model."""

    task: TaskSpec
    run_id: str
    iteration: int
    model: str
    feedback: Feedback | None
    tries_on_model: int


class Executor(Protocol):
    """Runs one attempt of ``sup``'s run and emits its events through ``emit``, in order.

    Exceptions mean what they mean to the supervisor: a model to skip (``ModelNotFound``,
    ``BackendUnreachable``, ...) moves the task along its chain; any other ends the run as an
    error, which the queue retries under its lease rules.

    An executor whose models live on other hosts may also say which models it can reach,
    ``available_models(inventory, warn) -> set[str]``; the session then asks it instead of
    checking each endpoint from this process (see :func:`kisystem.loop.session.reachable_models`).
    """

    name: str

    async def attempt(self, sup: Supervisor, job: AttemptJob, emit: Emit) -> Attempt: ...


class LocalExecutor:
    """This process does the work: the loop's behaviour before executors existed."""

    name = "local"

    async def attempt(self, sup: Supervisor, job: AttemptJob, emit: Emit) -> Attempt:
        return await sup.attempt_here(job, emit)


def require_ray():
    """The ``ray`` module, or a one-line usage error saying how to install it."""
    try:
        import ray
    except ImportError:
        raise RayMissing() from None
    return ray
