"""`bench queue`: the cost-aware order against FIFO (simulated), and the durable queue's throughput.

1. The guide's example (seed B section 5): tasks A, B, C with their stated priority and
   ETA on one worker, each taking exactly its ETA.
2. ``tasks`` tasks on ``workers`` workers, with true mean durations per (model, domain)
   that the static table gets wrong by up to about 2x, and per-task noise.  The ordering
   learns its ETAs from a synthetic history drawn from the same distributions and its
   priorities from the meta-supervisor over that history, exactly as the runner does.
   Measure: total weighted completion time sum(w * C), w = the task's PriorityScore, for
   the cost-aware order, FIFO, the cost-aware order with the static table only, and the
   best order computable here: Smith's rule (WSPT) on the true durations, list-scheduled,
   which is within (1 + sqrt 2) / 2 of optimal on parallel machines (Kawaguchi and Kyan
   1986).  The Eastman-Even-Isaacs (1964) lower bound says how far from optimal that is.
3. Throughput: add + claim + start + finish per second through :class:`QueueStore` on a
   temporary database with the store's durable settings (WAL, every commit synced).
"""

from __future__ import annotations

import heapq
import random
import tempfile
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from kisystem.config import OptimizationConfig
from kisystem.models.inventory import load_inventory
from kisystem.queue.ordering import EtaEstimator, Ordering, PriorityScores, static_eta
from kisystem.routing.meta import MetaSupervisor
from kisystem.store.learning import LearningStore, RunRecord, utc_now
from kisystem.store.queue import Candidate, QueueStore, Submission

GUIDE_TASKS = (  # name, domain, model, priority, ETA (s), as the guide states them
    ("A", "Audio/DSP", "qwen2.5-coder:32b", 90.0, 300.0),
    ("B", "C++/System", "deepseek-coder-v2:16b", 80.0, 180.0),
    ("C", "CUDA/Kernel", "deepseek-r1:32b", 95.0, 900.0),
)
GUIDE_CHECKPOINT_S = 480.0
EXPLICIT_PRIORITIES = (25.0, 50.0, 75.0, 90.0)
HISTORY_PER_PAIR = 30


# -- 1. the guide's example ------------------------------------------------------------


@dataclass(frozen=True)
class GuideResult:
    cost_aware: list[tuple[str, float]]  # (task, completion s) in run order
    fifo: list[tuple[str, float]]

    def done_by(self, order: list[tuple[str, float]], t: float = GUIDE_CHECKPOINT_S) -> int:
        return sum(1 for _, done in order if done <= t)


def guide_example() -> GuideResult:
    by_model = {model: eta for _, _, model, _, eta in GUIDE_TASKS}
    ordering = Ordering(eta=lambda model, domain: by_model[model])
    cands = [Candidate(i, d, m, p, 1) for i, (_, d, m, p, _) in enumerate(GUIDE_TASKS)]
    ranked = [c.id for c in ordering.ranked(cands)]
    return GuideResult(_serial(ranked), _serial(list(range(len(GUIDE_TASKS)))))


def _serial(order: list[int]) -> list[tuple[str, float]]:
    clock, out = 0.0, []
    for i in order:
        clock += GUIDE_TASKS[i][4]
        out.append((GUIDE_TASKS[i][0], clock))
    return out


# -- 2. many tasks, several workers ------------------------------------------------------


@dataclass(frozen=True)
class SimTask:
    id: int
    domain: str
    model: str
    priority: float | None  # explicit, else the domain's PriorityScore applies
    duration: float


@dataclass(frozen=True)
class ScheduleResult:
    tasks: int
    workers: int
    weighted: dict[str, float]  # policy -> sum(w * C)
    lower_bound: float
    makespan: dict[str, float]

    def ratio(self, a: str, b: str) -> float:
        return self.weighted[a] / self.weighted[b]


class _World:
    """True duration distributions per (model, domain), and a history drawn from them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.chains = {d: r.chain for d, r in load_inventory("ollama").routes.items()}
        self.mean = {(m, d): static_eta(m, d) * self.rng.lognormvariate(0.0, 0.5)
                     for d, chain in self.chains.items() for m in chain}  # fmt: skip
        self.solve = {d: self.rng.uniform(0.3, 0.95) for d in self.chains}

    def duration(self, model: str, domain: str) -> float:
        return self.mean[(model, domain)] * self.rng.lognormvariate(0.0, 0.35)

    def history(self) -> Iterator[RunRecord]:
        now, n = utc_now(), 0
        for (model, domain) in self.mean:
            for _ in range(HISTORY_PER_PAIR):
                n += 1
                wall = self.duration(model, domain)
                ts = now - timedelta(days=self.rng.uniform(0.5, 60.0))
                ok = self.rng.random() < self.solve[domain]
                yield RunRecord(f"hist{n:07d}", f"t{n}", domain, model, 1, 90.0 if ok else 20.0,
                                "success" if ok else "failed", None, None, 0.0, 0.0, 0.0, ts,
                                ts + timedelta(seconds=wall), 0, 0, None, (model,), wall, None)  # fmt: skip

    def task(self, i: int) -> SimTask:
        domain = self.rng.choice(sorted(self.chains))
        chain = self.chains[domain]
        model = chain[0] if self.rng.random() < 0.6 else self.rng.choice(chain)
        explicit = self.rng.choice(EXPLICIT_PRIORITIES) if self.rng.random() < 0.2 else None
        return SimTask(i, domain, model, explicit, self.duration(model, domain))


def schedule_benchmark(tasks: int = 1000, workers: int = 3, seed: int = 0) -> ScheduleResult:
    world = _World(seed)
    with tempfile.TemporaryDirectory(prefix="kisystem-bench-queue-") as tmp, \
            LearningStore.open(Path(tmp) / "history.db") as store:  # fmt: skip
        store.import_runs(world.history())
        scores = PriorityScores.from_meta(MetaSupervisor(store, OptimizationConfig()))
        learned = EtaEstimator.from_store(store)
    jobs = [world.task(i) for i in range(tasks)]
    weight = {j.id: scores.score(j.domain, j.priority) for j in jobs}
    policies: dict[str, Callable[[list[Candidate], set[str]], Candidate]] = {
        "cost-aware (learned ETA)": _ordered(Ordering(learned, scores)),
        "cost-aware (static ETA)": _ordered(Ordering(static_eta, scores)),
        "FIFO": lambda cands, loaded: min(cands, key=lambda c: c.id),
    }
    finish = {name: simulate(jobs, workers, pick) for name, pick in policies.items()}
    finish["best (WSPT, true durations)"] = list_schedule(_wspt(jobs, weight), workers)
    weighted = {name: sum(weight[i] * c for i, c in done.items()) for name, done in finish.items()}
    makespan = {name: max(done.values()) for name, done in finish.items()}
    return ScheduleResult(tasks, workers, weighted, _lower_bound(jobs, weight, workers), makespan)


def _ordered(ordering: Ordering) -> Callable[[list[Candidate], set[str]], Candidate]:
    def pick(cands: list[Candidate], loaded: set[str]) -> Candidate:
        ordering.loaded = lambda: loaded
        chosen = ordering.pick(cands)
        assert chosen is not None
        return chosen

    return pick


def simulate(jobs: list[SimTask], workers: int,
             pick: Callable[[list[Candidate], set[str]], Candidate]) -> dict[int, float]:  # fmt: skip
    """List scheduling: whenever a worker is free it takes the task ``pick`` chooses.

    Candidates are grouped like the store groups them (oldest task per domain, model and
    priority); ``loaded`` holds the models the other workers are running and this worker's last.
    """
    groups: dict[tuple[str, str, float | None], deque[SimTask]] = defaultdict(deque)
    for job in jobs:
        groups[(job.domain, job.model, job.priority)].append(job)
    free = [(0.0, w, "") for w in range(workers)]
    running: dict[int, tuple[float, str]] = {}
    done: dict[int, float] = {}
    while groups:
        t, w, last = heapq.heappop(free)
        loaded = {m for end, m in running.values() if end > t} | {last}
        cands = [Candidate(q[0].id, d, m, p, len(q)) for (d, m, p), q in groups.items()]
        chosen = pick(cands, loaded)
        key = (chosen.domain, chosen.model, chosen.priority)
        job = groups[key].popleft()
        if not groups[key]:
            del groups[key]
        done[job.id] = t + job.duration
        running[w] = (done[job.id], job.model)
        heapq.heappush(free, (done[job.id], w, job.model))
    return done


def list_schedule(order: list[SimTask], workers: int) -> dict[int, float]:
    free = [0.0] * workers
    done: dict[int, float] = {}
    for job in order:
        start = heapq.heappop(free)
        done[job.id] = start + job.duration
        heapq.heappush(free, done[job.id])
    return done


def _wspt(jobs: list[SimTask], weight: dict[int, float]) -> list[SimTask]:
    return sorted(jobs, key=lambda j: (-weight[j.id] / j.duration, j.id))


def _lower_bound(jobs: list[SimTask], weight: dict[int, float], m: int) -> float:
    """Eastman, Even and Isaacs: sum wC >= (1/m) * WSPT on one machine + (m-1)/(2m) * sum w p."""
    clock = single = 0.0
    for job in _wspt(jobs, weight):
        clock += job.duration
        single += weight[job.id] * clock
    return single / m + (m - 1) / (2 * m) * sum(weight[j.id] * j.duration for j in jobs)


# -- 3. throughput ----------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    tasks: int
    add_per_s: float
    claim_per_s: float
    complete_per_s: float  # start + finish
    cycles_per_s: float  # add + claim + start + finish, end to end
    synchronous: int


def throughput(tasks: int = 2000, directory: Path | None = None) -> Throughput:
    """Time ``tasks`` add, claim and start + finish steps, each its own transaction, in a fresh database."""
    pick = Ordering().pick
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="kisystem-queue-tp-", dir=directory) as tmp, \
            QueueStore.open(Path(tmp) / "queue.db") as queue:  # fmt: skip
        add_s = _timed(lambda i: queue.add([Submission(f"id = 't{i}'", f"t{i}", "Python/General", f"k{i}")]), tasks)
        claims: list[int] = []
        claim_s = _timed(lambda i: claims.append(queue.claim("bench", 60.0, pick).id), tasks)  # type: ignore[union-attr]
        complete_s = _timed(lambda i: _complete(queue, claims[i]), tasks)
        sync = int(queue.durability()["synchronous"])
    total = add_s + claim_s + complete_s
    return Throughput(tasks, tasks / add_s, tasks / claim_s, tasks / complete_s, tasks / total, sync)


def _complete(queue: QueueStore, task_id: int) -> None:
    queue.start(task_id, "bench")
    queue.finish(task_id, "bench", "succeeded", "success", 100.0, "done")


def _timed(step: Callable[[int], object], n: int) -> float:
    started = time.perf_counter()
    for i in range(n):
        step(i)
    return time.perf_counter() - started


# -- report -----------------------------------------------------------------------------

BEST = "best (WSPT, true durations)"
SYNC_NAMES = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}


def report_lines(guide: GuideResult, sched: ScheduleResult, tp: Throughput) -> list[str]:
    return [*_guide_lines(guide), "", *_schedule_lines(sched), "", *_throughput_lines(tp)]


def _guide_lines(g: GuideResult) -> list[str]:
    weights = {name: p for name, _, _, p, _ in GUIDE_TASKS}
    lines = ["Guide example (seed B section 5): one worker, each task takes its stated ETA"]
    for label, order in (("cost-aware", g.cost_aware), ("FIFO", g.fifo)):
        steps = ", ".join(f"{name} done {_mmss(t)}" for name, t in order)
        marks = " / ".join(str(g.done_by(order, m * 60.0)) for m in (3, 5, 8))
        weighted = sum(weights[name] * t for name, t in order)
        lines.append(f"  {label:<10} {steps}; done by 3/5/8 min: {marks}; sum(priority x completion) {weighted:,.0f}")
    lines.append("  note: FIFO's B ends at exactly 8:00, so counted at 8:00 both orders have 2 done;"
                 " the guide's 'FIFO: 1' counts B as not done")
    return lines


def _schedule_lines(r: ScheduleResult) -> list[str]:
    lines = [f"{r.tasks:,} tasks, {r.workers} workers, simulated durations; ETAs learned from a synthetic history",
             f"  {'order':<30} {'sum(w x C)':>16} {'vs FIFO':>8} {'vs best':>8} {'makespan':>10}"]
    for name, total in r.weighted.items():
        lines.append(f"  {name:<30} {total:>16,.0f} {r.ratio(name, 'FIFO'):>7.3f}x {r.ratio(name, BEST):>7.3f}x"
                     f" {r.makespan[name] / 3600:>8.1f} h")
    lines.append(f"  best order vs the Eastman-Even-Isaacs lower bound: {r.weighted[BEST] / r.lower_bound:.4f}x")
    return lines


def _throughput_lines(t: Throughput) -> list[str]:
    mode = SYNC_NAMES.get(t.synchronous, str(t.synchronous))
    return [f"Durable queue throughput ({t.tasks:,} tasks, WAL, synchronous={mode}, one transaction per step)",
            f"  add {t.add_per_s:,.0f}/s   claim {t.claim_per_s:,.0f}/s   start+finish {t.complete_per_s:,.0f}/s",
            f"  add + claim + complete: {t.cycles_per_s:,.0f} tasks/s"]


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
