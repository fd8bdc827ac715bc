"""A test-only entry point: the real queue runner over DB with the deterministic model.

    python -m tests.queue.crash_entry DB WORKSPACES GENERATION_LOG [WORKERS]

KISYSTEM_QUEUE_KILL_AT (read by the runner) makes it SIGKILL itself at that step.
Prints the run summary as JSON on stdout.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from kisystem.store.learning import LearningStore
from kisystem.store.queue import QueueStore
from tests.queue.support import DeterministicModel, make_runner


def main(argv: list[str]) -> int:
    db, workspaces, log = Path(argv[1]), Path(argv[2]), Path(argv[3])
    workers = int(argv[4]) if len(argv) > 4 else 2
    with LearningStore.open(db) as learning, QueueStore.open(db) as queue:
        runner = make_runner(queue, learning, DeterministicModel(log), workspaces, workers=workers, lease_s=600.0)
        summary = asyncio.run(runner.run())
    print(json.dumps({"claimed": summary.claimed, "recovered": summary.recovered, "replayed": summary.replayed,
                      "generated": summary.generated, "states": dict(summary.states)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
