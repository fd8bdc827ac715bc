"""A learning database for the Stats page and the success metrics in /metrics, with figures worked out by hand.

Built with the stats tests' own scenarios (``tests.stats.support``: the real LearningStore and QueueStore on
a moved clock), in this order, so the dashboard's clock NOW = T0 + 2 h reproduces their figures:

- ``guide_queue`` at T0: tasks A, B, C run one at a time (B, A, C), D never leased: waits 10, 190, 490 s
  (average 230 s), 3 finished in the 2 h since the first was queued (1.5 tasks/h); FIFO's weighted flow
  196,500 against the recorded 188,700 (+4.1 %);
- ``bias_history``: the bias recommended ``small`` for Audio/DSP twice, it solved once: hit rate 50 %;
- ``profiled_run``: 16 s of profiling where always-full would take 36 s: 20 s saved (56 %);
- ``fill``: Python 3 escalations, 3 stop-loss triggers, 2 escalated runs, 1 recovered; C++ 1 trigger;
- one run whose domain and model are HTML (``HOSTILE_DOMAIN``, ``HOSTILE_MODEL``), solved in one attempt of 4 s.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tests.stats.support import (
    T0,
    Db,
    Step,
    bias_history,
    fill,
    guide_queue,
    profiled_run,
)

HOSTILE_DOMAIN = "<script>alert(3)</script>"
HOSTILE_MODEL = "<b>m</b>"
NOW = T0 + timedelta(hours=2)


def seed_stats(path: Path) -> Path:
    db = Db(path)
    try:
        guide_queue(db)
        bias_history(db)
        profiled_run(db)
        fill(db)
        db.run([Step(HOSTILE_MODEL, "ok", gen_s=4.0)], "success", domain=HOSTILE_DOMAIN)
        assert db.clock.now < NOW, db.clock.now
    finally:
        db.close()
    return path
