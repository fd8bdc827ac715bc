"""One independent sample: a model's answer to the plain prompt (no feedback), judged."""

from __future__ import annotations

import time

from kisystem.errors import BackendError, BackendUnreachable, ModelNotFound
from kisystem.loop.attempt import Attempt
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.inventory import ModelSpec


async def judged_sample(sup: Supervisor, task: TaskSpec, spec: ModelSpec, index: int, run_id: str) -> Attempt:
    """Sample ``index`` of ``spec`` on ``task``: greedy first, then seeded at the retry temperature.

    Runs inside ``sup.attempts.task_run(task, run_id)``, so that the task's judge decides.
    A backend error is a failed sample (its seconds count); a missing model or a dead
    backend is no sample and propagates.
    """
    request = sup.attempts.request_for(task, spec.name, spec.mode, None, index, spec.max_tokens)
    started = time.monotonic()
    try:
        generation = await sup.generator.generate(request)
    except (ModelNotFound, BackendUnreachable):
        raise
    except BackendError as err:
        attempt = Attempt.generation_failed(spec.name, err)
        attempt.t_generate = time.monotonic() - started
        return attempt
    return await sup.attempts.run(task, run_id, index + 1, spec.name, spec.mode, request, generation,
                                  lambda *a, **k: None)
