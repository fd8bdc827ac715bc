"""``get_efficiency``: how well the cost-aware queue serves its tasks (seed B, "Success Metrics"), from the
queue's own log (``queue_transitions``) in the learning database.

Definitions (tasks first queued in the window, unless said otherwise):

- average wait: from a task's first ``queued`` (its insert) to its first lease;
- throughput: distinct tasks that reached a result state (succeeded, failed, exhausted) in the window,
  per hour of the window (the last ``days`` days, or from the queue's first record up to now), and per
  hour while the queue was busy (its first lease in the window to its last result in it);
- ROI accuracy: the queue does not store the ETA it ranked a task by (``queue_tasks`` has no such
  column), so the predicted-against-actual error cannot be read back.  What is measured instead is
  a replay: for every finished task whose run is recorded, the ETA the estimator
  (:class:`~kisystem.queue.ordering.EtaEstimator`) gives from the runs that had ended before the
  task's last claim, for the model its run started on, against the run's wall time;
- against FIFO (the goals' task efficiency): the finished tasks replayed twice on as many workers as
  ever held tasks at once, each task taking the time it was held (summed over its attempts), arriving
  when it was queued: once in the order the queue claimed them, once first-in-first-out.  The gain is
  sum(w·flow) under FIFO over the same under the recorded order, minus 1; w is the task's explicit
  priority when every task has one, else 1 for all (the queue stores no PriorityScore for tasks
  ranked by their domain's priority, so then the comparison is of plain flow times).
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kisystem.queue.ordering import EtaEstimator
from kisystem.stats.common import Window, no_data, parse_ts, ratio
from kisystem.store.learning import LearningStore, ModelStats
from kisystem.store.queue import ACTIVE_STATES, RESULT_STATES

_TRANSITIONS = "SELECT task, from_state, to_state, ts FROM queue_transitions ORDER BY task, id"
_TASKS = "SELECT id, priority, state, run_id FROM queue_tasks"
_RUN = "SELECT domain, model, models_tried, wall_s FROM runs WHERE run_id = ? AND outcome != 'running'"
_HISTORY = ("SELECT COUNT(*) AS runs, AVG(wall_s) AS mean FROM runs"
            " WHERE domain = ? AND model = ? AND outcome != 'running' AND ended_ts < ?")  # fmt: skip
ROI_NEEDS = "finished queued tasks whose run has a wall time"
FIFO_NEEDS = "at least 2 finished queued tasks"
WAIT_NEEDS = "queued tasks that were leased"
THROUGHPUT_NEEDS = "tasks run through the queue (kisystem queue run)"
ROI_NOT_RECORDED = ("not recorded: the queue does not store the ETA it ranked a task by; "
                    "the figures are a replay of the ETA estimator against each run's wall time")  # fmt: skip


@dataclass
class TaskLog:
    """One queued task as its transitions tell it."""

    id: int
    queued: datetime
    priority: float | None = None
    state: str = "queued"
    run_id: str | None = None
    first_lease: datetime | None = None
    held: list[tuple[datetime, datetime | None]] = field(default_factory=list)  # lease .. release/result
    results: list[datetime] = field(default_factory=list)

    @property
    def held_s(self) -> float:
        return sum((end - start).total_seconds() for start, end in self.held if end is not None)


@dataclass(frozen=True)
class RoiAccuracy:
    """Replayed ETA against actual run time (the queue's own predictions are not stored)."""

    tasks: int = 0
    mean_abs_error: float | None = None  # mean |ETA - actual| / actual
    mean_ratio: float | None = None  # mean actual / ETA (> 1: runs took longer than estimated)
    actual_mean_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"recorded": False, "note": ROI_NOT_RECORDED, "replayed_tasks": self.tasks,
                                "replayed_mean_abs_error": self.mean_abs_error,
                                "replayed_mean_ratio": self.mean_ratio, "actual_mean_s": self.actual_mean_s}
        if not self.tasks:
            data["no_data"] = no_data(ROI_NEEDS)
        return data


@dataclass(frozen=True)
class FifoComparison:
    tasks: int
    workers: int
    weighted: bool  # True: weights are the tasks' explicit priorities; False: every task weighs 1
    flow_recorded: float  # sum of w * (completion - arrival) in seconds, recorded order
    flow_fifo: float

    @property
    def gain(self) -> float | None:
        """FIFO's weighted flow over the recorded order's, minus 1 (0.3: the recorded order is 30 % better)."""
        if self.flow_recorded == 0:
            return 0.0 if self.flow_fifo == 0 else None
        return self.flow_fifo / self.flow_recorded - 1.0

    @property
    def basis(self) -> str:
        return ("weighted by explicit priority" if self.weighted
                else "unweighted flow time: no PriorityScore stored for tasks without an explicit priority")

    def to_dict(self) -> dict[str, Any]:
        return {"tasks": self.tasks, "workers": self.workers, "basis": self.basis, "gain": self.gain,
                "weighted_flow_recorded_s": round(self.flow_recorded, 3),
                "weighted_flow_fifo_s": round(self.flow_fifo, 3)}


@dataclass(frozen=True)
class QueueEfficiency:
    window: Window
    tasks: int  # first queued in the window
    waits_s: tuple[float, ...] = ()
    never_leased: int = 0
    finished: int = 0
    window_h: float | None = None
    busy_h: float | None = None
    roi: RoiAccuracy = RoiAccuracy()
    fifo: FifoComparison | None = None

    @property
    def avg_wait_s(self) -> float | None:
        return ratio(sum(self.waits_s), len(self.waits_s))

    @property
    def throughput_per_h(self) -> float | None:
        return ratio(self.finished, self.window_h) if self.window_h else None

    @property
    def busy_throughput_per_h(self) -> float | None:
        return ratio(self.finished, self.busy_h) if self.busy_h else None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "window": self.window.to_dict(), "tasks": self.tasks,
            "avg_wait_s": self.avg_wait_s, "waits_measured": len(self.waits_s), "never_leased": self.never_leased,
            "finished": self.finished, "window_h": self.window_h, "throughput_per_h": self.throughput_per_h,
            "busy_h": self.busy_h, "busy_throughput_per_h": self.busy_throughput_per_h,
            "roi_accuracy": self.roi.to_dict(),
            "vs_fifo": self.fifo.to_dict() if self.fifo else {"gain": None, "no_data": no_data(FIFO_NEEDS)},
        }  # fmt: skip
        if not self.waits_s:
            data["avg_wait_no_data"] = no_data(WAIT_NEEDS)
        if self.window_h is None:
            data["throughput_no_data"] = no_data(THROUGHPUT_NEEDS)
        return data


def get_efficiency(store: LearningStore, window: Window) -> QueueEfficiency:
    """Average wait, throughput, ROI accuracy and the comparison against FIFO over ``window``."""
    logs = task_logs(store)
    since = window.since
    fresh = [t for t in logs if since is None or t.queued >= since]
    waits = tuple((t.first_lease - t.queued).total_seconds() for t in fresh if t.first_lease is not None)
    done = [t for t in logs if any(since is None or ts >= since for ts in t.results)]
    finished = [t for t in fresh if t.state in RESULT_STATES]
    return QueueEfficiency(window, len(fresh), waits, sum(t.first_lease is None for t in fresh), len(done),
                           _window_h(logs, window), _busy_h(logs, window), replay_roi(store, finished),
                           compare_fifo(finished))  # fmt: skip


def task_logs(store: LearningStore) -> list[TaskLog]:
    """Every queued task with its first queue and lease times, held intervals and result times."""
    logs: dict[int, TaskLog] = {}
    for task, frm, to, ts in store.query(_TRANSITIONS):
        at = parse_ts(ts)
        log = logs.setdefault(task, TaskLog(task, at))
        if frm is None:
            log.queued = at
        if to == "leased":
            log.first_lease = log.first_lease or at
            log.held.append((at, None))
        elif to not in ACTIVE_STATES and log.held and log.held[-1][1] is None:
            log.held[-1] = (log.held[-1][0], at)
        if to in RESULT_STATES:
            log.results.append(at)
    for row in store.query(_TASKS):
        if row["id"] in logs:
            log = logs[row["id"]]
            log.priority, log.state, log.run_id = row["priority"], row["state"], row["run_id"]
    return [logs[k] for k in sorted(logs)]


def _window_h(logs: list[TaskLog], window: Window) -> float | None:
    """The window's hours; None while the queue has never held a task (no throughput to speak of)."""
    if not logs:
        return None
    if window.days is not None:
        return window.days * 24.0
    first = min(t.queued for t in logs)
    return max(0.0, (window.now - first).total_seconds() / 3600.0)


def _busy_h(logs: list[TaskLog], window: Window) -> float | None:
    since = window.since
    leases = [start for t in logs for start, _ in t.held if since is None or start >= since]
    results = [ts for t in logs for ts in t.results if since is None or ts >= since]
    if not leases or not results or max(results) <= min(leases):
        return None
    return (max(results) - min(leases)).total_seconds() / 3600.0


# -- ROI accuracy: a replay of the ETA estimator -----------------------------------------


def replay_roi(store: LearningStore, finished: Iterable[TaskLog]) -> RoiAccuracy:
    errors, ratios, actuals = [], [], []
    for task in finished:
        pair = _eta_and_actual(store, task)
        if pair is None:
            continue
        eta, actual = pair
        errors.append(abs(eta - actual) / actual)
        ratios.append(actual / eta)
        actuals.append(actual)
    n = len(actuals)
    if not n:
        return RoiAccuracy()
    return RoiAccuracy(n, sum(errors) / n, sum(ratios) / n, sum(actuals) / n)


def _eta_and_actual(store: LearningStore, task: TaskLog) -> tuple[float, float] | None:
    """The replayed ETA of the task's last run and that run's wall time; None where either is unknown."""
    if task.run_id is None or not task.held:
        return None
    rows = store.query(_RUN, (task.run_id,))
    if not rows or not rows[0]["wall_s"]:
        return None
    run = rows[0]
    model = (json.loads(run["models_tried"]) or [run["model"]])[0]
    claimed = task.held[-1][0].isoformat(timespec="microseconds")
    history = store.query(_HISTORY, (run["domain"], model, claimed))[0]
    stats = [ModelStats(run["domain"], model, history["runs"], 0, history["mean"])] if history["runs"] else []
    return EtaEstimator(stats)(model, run["domain"]), float(run["wall_s"])


# -- against FIFO: the recorded order and first-in-first-out, replayed alike --------------


@dataclass(frozen=True)
class _Job:
    id: int
    arrival: float  # seconds after the first arrival
    duration: float
    weight: float
    claimed: float  # when the queue first claimed it (its rank in the recorded order)


def compare_fifo(finished: list[TaskLog]) -> FifoComparison | None:
    """The finished tasks under the recorded claim order and under FIFO; None with fewer than 2 tasks."""
    if len(finished) < 2:
        return None
    weighted = all(t.priority is not None for t in finished)
    t0 = min(t.queued for t in finished)

    def seconds(ts: datetime) -> float:
        return (ts - t0).total_seconds()

    jobs = [_Job(t.id, seconds(t.queued), t.held_s, float(t.priority) if weighted else 1.0,  # type: ignore[arg-type]
                 seconds(t.first_lease or t.queued)) for t in finished]  # fmt: skip
    workers = max_concurrency(finished)
    recorded = weighted_flow(jobs, list_schedule(jobs, workers, lambda j: (j.claimed, j.id)))
    fifo = weighted_flow(jobs, list_schedule(jobs, workers, lambda j: (j.arrival, j.id)))
    return FifoComparison(len(jobs), workers, weighted, recorded, fifo)


def max_concurrency(tasks: Iterable[TaskLog]) -> int:
    """The most tasks held (leased or running) at one moment: the number of workers the queue had."""
    marks = sorted((ts, step) for t in tasks for start, end in t.held if end is not None
                   for ts, step in ((start, 1), (end, -1)))  # an end sorts before a start at the same time
    held = most = 0
    for _, step in marks:
        held += step
        most = max(most, held)
    return max(most, 1)


def list_schedule(jobs: list[_Job], workers: int, key: Callable[[_Job], tuple[float, int]]) -> dict[int, float]:
    """Completion times when each free worker takes the arrived job that comes first by ``key``."""
    arrivals = sorted(jobs, key=lambda j: (j.arrival, j.id))
    free = [0.0] * workers
    waiting: list[tuple[tuple[float, int], int, _Job]] = []
    done: dict[int, float] = {}
    i = 0
    while len(done) < len(jobs):
        t = heapq.heappop(free)
        if not waiting and arrivals[i].arrival > t:
            t = arrivals[i].arrival  # idle until the next task arrives
        while i < len(arrivals) and arrivals[i].arrival <= t:
            heapq.heappush(waiting, (key(arrivals[i]), arrivals[i].id, arrivals[i]))
            i += 1
        job = heapq.heappop(waiting)[2]
        done[job.id] = t + job.duration
        heapq.heappush(free, done[job.id])
    return done


def weighted_flow(jobs: list[_Job], completion: dict[int, float]) -> float:
    return sum(j.weight * (completion[j.id] - j.arrival) for j in jobs)
