"""Two-tier profiling's time savings over a window, from the ``profile`` events of the learning database.

The figures are :class:`~kisystem.loop.profiling.TimeSavings` (what ``kisystem profile stats`` shows),
read with one query over the window instead of run by run.
"""

from __future__ import annotations

import json

from kisystem.loop.profiling import ProfileRecord, TimeSavings
from kisystem.stats.common import Window
from kisystem.store.learning import LearningStore

_PROFILES = """
SELECT e.run_id, e.payload FROM run_events e JOIN runs r ON r.run_id = e.run_id
WHERE e.kind = 'profile' AND r.outcome != 'running' AND r.ts >= ? ORDER BY e.id
"""
SAVINGS_NEED = "profiled iterations with at least one full (tier 1) profile to price the others"


def profile_savings(store: LearningStore, window: Window) -> TimeSavings:
    """Tier counts, time spent and the estimated saving against always profiling fully."""
    found = (ProfileRecord.from_payload(row["run_id"], json.loads(row["payload"]))
             for row in store.query(_PROFILES, (window.since_iso,)))  # fmt: skip
    return TimeSavings.from_records(r for r in found if r is not None)


def saved_ratio(savings: TimeSavings) -> float | None:
    """The share of profiling time saved; None until a full profile gives the always-full estimate a price."""
    return savings.saved_ratio if savings.tier1_count else None
