"""More of the seeded database for the Queue and Profiling pages, written through the real stores.

On top of :func:`tests.web.support.seed` (q0 leased, q1 queued, q2 cancelled, all Python/General):
- ``cuda``: queued, CUDA/Kernel, its own priority 80 on ``mistral:7b`` (static ETA 30 s * 1.5 + 30 s = 75 s);
- ``hostile``: queued, its id is HTML (:data:`HOSTILE_QUEUED`), priority 90 on ``big``;
- ``flaky``: claimed, started, its run recorded (the seed's ``solved`` run), then failed;
- ``profiled``: a run of task :data:`PROFILED` whose iterations score 40, 70, 90 with tiers 1, 0, 0
  (tier 0 0.5 s each, the full profile 10 s; the third flags a regression tier 0 did not profile);
- ``older_profiled``: two days before T0, one iteration scoring 55 with a full profile of 6 s.
"""

from __future__ import annotations

from datetime import timedelta

from kisystem.store.learning import RunResult
from kisystem.store.queue import QueueStore, Submission
from tests.schedule.jobs.support import PY, T0, Db
from tests.web.support import Seeded

HOSTILE_QUEUED = "<script>alert(3)</script>"
PROFILED = "opt-<b>matmul</b>"
CUDA = "CUDA/Kernel"


def seed_queue(s: Seeded) -> dict[str, int]:
    """Add the queue tasks above; their ids by name."""
    db = s.db
    with QueueStore.open(db.path, clock=lambda: db.clock().timestamp()) as queue:
        added = queue.add([
            Submission("id = 'c'", "cuda", CUDA, "key-cuda", priority=80.0, model="mistral:7b"),
            Submission("id = 'h'", HOSTILE_QUEUED, PY, "key-hostile", priority=90.0, model="big"),
            Submission("id = 'f'", "flaky", PY, "key-flaky", priority=100.0, model="small"),
        ])  # fmt: skip
        ids = {"cuda": added[0].id, "hostile": added[1].id, "flaky": added[2].id}
        claim = queue.claim("worker-1", 60.0, lambda cs: next(c for c in cs if c.id == ids["flaky"]))
        assert claim is not None and queue.start(claim.id, "worker-1")
        assert queue.attach_run(claim.id, "worker-1", s.ids["solved"])
        assert queue.finish(claim.id, "worker-1", "failed", "failed", 0.0, "tests failed")
    return ids


def seed_profiles(s: Seeded) -> dict[str, str]:
    """Add the two profiled runs above; their run ids."""
    db, now = s.db, s.db.clock.now
    db.clock.now = T0 - timedelta(days=2)
    older = profiled_run(db, "older-task", [(55.0, 1, 0.4, 6.0, False)])
    db.clock.now = now
    profiled = profiled_run(db, PROFILED, [(40.0, 1, 0.5, 10.0, False), (70.0, 0, 0.5, 0.0, False),
                                           (90.0, 0, 0.5, 0.0, True)])  # fmt: skip
    return {"older_profiled": older, "profiled": profiled}


def profiled_run(db: Db, task: str, points: list[tuple[float, int, float, float, bool]]) -> str:
    """A finished run: per iteration (score, tier, tier0_s, tier1_s, regression) as ``profile`` and ``score`` events."""
    run_id = db.store.start_run(task, PY, "small")
    for i, (score, tier, tier0_s, tier1_s, regression) in enumerate(points, 1):
        event = {"iteration": i, "model": "small"}
        db.store.append_event(run_id, "generate", {**event, "temperature": 0.0})
        db.clock.advance(seconds=5)
        db.store.append_event(run_id, "profile", {**event, "ok": True, "tier": tier, "tool": "bench",
                                                  "seconds": tier0_s + tier1_s, "tier0_s": tier0_s,
                                                  "tier1_s": tier1_s, "score": score, "regression": regression})
        db.store.append_event(run_id, "score", {**event, "score": score, "error": None})
    db.store.finish_run(run_id, RunResult(model="small", iter=len(points), score_final=points[-1][0],
                                          outcome="success"))  # fmt: skip
    db.clock.advance(minutes=1)
    return run_id
