"""`bench executors`: what the queue's scheduling costs per task, run here and on a two-node Ray cluster.

The same tasks go through the real queue runner (claim, lease, answer cache, learning
record) once with the ``local`` executor and once with the ``ray`` executor on a Ray
cluster of two nodes started on this machine (:class:`~kisystem.executors.local_cluster.LocalCluster`).
Each task's generation is simulated: a scripted model sleeps the duration its task names,
drawn from a seeded lognormal (:func:`sim_tasks`, the :class:`~kisystem.bench.queue.SimTask`
of ``bench queue``); the rest of the attempt is tiny and fixed (one sandboxed ``true`` as the
test), so the figures measure scheduling, not work.

Both executors get ``slots`` attempts at once: ``slots`` runner workers and generations per
backend here; ``slots`` model slots split over the two Ray nodes there.  The ideal wall time
is the list schedule of the simulated durations on ``slots`` slots in queue order
(:func:`~kisystem.bench.queue.list_schedule`): what a scheduler costing nothing would take.
The scheduling overhead per task is (wall - ideal) / tasks; times ``slots`` it is the slot
time each task holds beyond its simulated generation.  A warm-up of a few tasks runs first on
each executor, untimed (reported apart), so Ray's worker start and imports count once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kisystem.bench.queue import SimTask, list_schedule
from kisystem.config import OptimizationConfig
from kisystem.errors import UsageError
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import TaskSpec, load_task_text
from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.models.inventory import parse_inventory
from kisystem.queue.ordering import Ordering
from kisystem.queue.runner import QueueRunner, RunnerSettings, derive_supervisor, submission_for
from kisystem.store.learning import LearningStore
from kisystem.store.queue import QueueStore

SIM_MODEL = "sim"
DOMAIN = "Python/General"
ANSWER = "```\nok\n```"
SIGMA = 0.5  # spread of the simulated durations (lognormal)
PORT_BASE = 18600  # the first of the local Ray cluster's 72 ports
EXECUTOR_NAMES = ("local", "ray")
_SLEEP_RE = re.compile(r"\[simulated generation: (\d+(?:\.\d+)?) s\]")
_SPEC = """\
id = "sim-{id:05d}"
domain = "{domain}"
language = "other"
prompt = "Simulated task {id} [simulated generation: {seconds:.3f} s]"

[test]
command = "true"
timeout_s = 60
"""

INVENTORY = parse_inventory({
    "endpoints": {"sim": {"backend": "openai", "base_url": "http://127.0.0.1:9"}},  # never called: scripted
    "models": [{"name": SIM_MODEL, "rank": 1, "timeout_s": 60, "endpoint": "sim", "mode": "chat"}],
    "routes": {DOMAIN: {"start": SIM_MODEL, "escalation": []}},
}, "bench executors inventory")  # fmt: skip


# -- the simulated work -------------------------------------------------------------------


class SleepingModel:
    """Answers every prompt right after sleeping the generation time its task names."""

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        seconds = simulated_seconds(request)
        await asyncio.sleep(seconds)
        if on_text:
            on_text(ANSWER)
        return Generation(text=ANSWER, model=request.model, prompt_tokens=1, completion_tokens=1, total_s=seconds)


@dataclass(frozen=True)
class SleepingModels:
    """The Ray workers' model factory (picklable)."""

    def __call__(self) -> SleepingModel:
        return SleepingModel()


def simulated_seconds(request: GenerationRequest) -> float:
    for message in request.messages:
        found = _SLEEP_RE.search(message["content"])
        if found:
            return float(found.group(1))
    raise ValueError("the prompt names no simulated generation time")


def sim_tasks(count: int, mean_s: float, seed: int = 0) -> list[SimTask]:
    """``count`` tasks whose durations are drawn from a lognormal of mean ``mean_s`` (rounded to ms,
    as the prompt carries them); the same seed gives the same first tasks at every count."""
    rng = random.Random(seed)
    mu = math.log(mean_s) - SIGMA**2 / 2
    return [SimTask(i, DOMAIN, SIM_MODEL, None, round(rng.lognormvariate(mu, SIGMA), 3)) for i in range(count)]


def task_spec(job: SimTask) -> TaskSpec:
    text = _SPEC.format(id=job.id, domain=job.domain, seconds=job.duration)
    return load_task_text(text, f"simulated task {job.id}", INVENTORY.domains)


def ideal_wall_s(jobs: Sequence[SimTask], slots: int) -> float:
    """The makespan of a scheduler that costs nothing: list scheduling in queue order."""
    return max(list_schedule(list(jobs), slots).values(), default=0.0)


# -- one run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExecutorRun:
    executor: str
    tasks: int
    slots: int
    wall_s: float
    ideal_s: float
    succeeded: int
    generated: int
    per_node: dict[str, int] = field(default_factory=dict)  # Ray node id -> attempts it ran

    @property
    def throughput(self) -> float:
        """Tasks per second."""
        return self.tasks / self.wall_s

    @property
    def overhead_per_task_s(self) -> float:
        return (self.wall_s - self.ideal_s) / self.tasks

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "throughput": self.throughput, "overhead_per_task_s": self.overhead_per_task_s}


async def run_queue(name: str, jobs: Sequence[SimTask], slots: int, workdir: Path, executor: Any = None) -> ExecutorRun:
    """Queue ``jobs`` in a fresh database and time the runner draining it; ``executor`` None: local."""
    cfg = OptimizationConfig()
    model = SleepingModel()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "queue.db"
    with LearningStore.open(db) as learning, QueueStore.open(db) as queue:
        queue.add([submission_for(task_spec(j), key_space=name) for j in jobs])
        base = Supervisor(cfg, INVENTORY, model, learning, AttemptRunner(PhaseRunner(cfg), workdir / "ws"),
                          executor=executor)
        runner = QueueRunner(queue, learning, derive_supervisor(base), model, Ordering,
                             settings=RunnerSettings(workers=slots, per_backend=slots), inventory=INVENTORY)
        started = time.perf_counter()
        summary = await runner.run()
        wall = time.perf_counter() - started
        placed = Counter(json.loads(r[0]).get("node") for r in
                         learning.query("SELECT payload FROM run_events WHERE kind = 'node'"))  # fmt: skip
    return ExecutorRun(name, len(jobs), slots, wall, ideal_wall_s(jobs, slots), summary.states["succeeded"],
                       summary.generated, {str(k): v for k, v in placed.items()})


# -- the benchmark -------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchSettings:
    sizes: tuple[int, ...] = (200,)
    slots: int = 4
    mean_s: float = 0.5
    seed: int = 0
    executors: tuple[str, ...] = EXECUTOR_NAMES
    warmup: int | None = None  # tasks run untimed first on each executor; None: 2 x slots
    port_base: int = PORT_BASE

    def __post_init__(self) -> None:
        if not self.sizes or min(self.sizes) < 1:
            raise UsageError("--tasks: give one or more task counts of at least 1, e.g. 200,2000")
        if self.slots < 2 and "ray" in self.executors:
            raise UsageError("--slots must be at least 2 with the ray executor: one per node")
        unknown = set(self.executors) - set(EXECUTOR_NAMES)
        if unknown or not self.executors:
            raise UsageError(f"--executor: expected {' or '.join(EXECUTOR_NAMES)}, got {sorted(unknown) or 'none'}")

    @property
    def warmup_tasks(self) -> int:
        return 2 * self.slots if self.warmup is None else self.warmup


@dataclass
class BenchResult:
    settings: BenchSettings
    runs: list[ExecutorRun] = field(default_factory=list)
    warmups: dict[str, float] = field(default_factory=dict)  # executor -> seconds of its warm-up
    cluster: dict[str, Any] = field(default_factory=dict)

    def run(self, executor: str, tasks: int) -> ExecutorRun | None:
        return next((r for r in self.runs if r.executor == executor and r.tasks == tasks), None)

    def ratios(self, tasks: int) -> dict[str, float] | None:
        """ray / local: throughput and overhead per task (None unless both ran)."""
        local, ray = self.run("local", tasks), self.run("ray", tasks)
        if local is None or ray is None:
            return None
        return {"throughput_ray_over_local": ray.throughput / local.throughput,
                "overhead_ray_over_local": _ratio(ray.overhead_per_task_s, local.overhead_per_task_s)}

    def growth(self, executor: str) -> float | None:
        """Overhead per task at the largest size over that at the smallest (None with one size)."""
        sizes = sorted({r.tasks for r in self.runs if r.executor == executor})
        if len(sizes) < 2:
            return None
        first, last = self.run(executor, sizes[0]), self.run(executor, sizes[-1])
        assert first is not None and last is not None
        return _ratio(last.overhead_per_task_s, first.overhead_per_task_s)

    def to_dict(self) -> dict[str, Any]:
        return {"settings": asdict(self.settings), "runs": [r.as_dict() for r in self.runs],
                "warmup_s": self.warmups, "cluster": self.cluster,
                "ratios": {str(n): self.ratios(n) for n in self.settings.sizes},
                "overhead_growth": {e: self.growth(e) for e in self.settings.executors},
                "machine": {"cpus": os.cpu_count(), "load_average": list(os.getloadavg())}}  # fmt: skip


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


Progress = Callable[[str], None]


async def run_bench(settings: BenchSettings, workdir: Path, progress: Progress = lambda line: None) -> BenchResult:
    """Every size through every executor asked for; the Ray cluster lives for the whole bench."""
    result = BenchResult(settings)
    for name in settings.executors:
        with _executor(name, settings, workdir / "nodes", result, progress) as executor:
            await _runs(name, executor, settings, workdir, result, progress)
    return result


async def _runs(name: str, executor: Any, settings: BenchSettings, workdir: Path, result: BenchResult,
                progress: Progress) -> None:  # fmt: skip
    if settings.warmup_tasks:
        jobs = sim_tasks(settings.warmup_tasks, settings.mean_s, settings.seed + 1)
        warm = await run_queue(name, jobs, settings.slots, workdir / f"{name}-warmup", executor)
        result.warmups[name] = warm.wall_s
        progress(f"{name}: warm-up of {warm.tasks} tasks in {warm.wall_s:.1f} s")
    for size in settings.sizes:
        jobs = sim_tasks(size, settings.mean_s, settings.seed)
        run = await run_queue(name, jobs, settings.slots, workdir / f"{name}-{size}", executor)
        result.runs.append(run)
        progress(f"{name}: {size} tasks in {run.wall_s:.1f} s (ideal {run.ideal_s:.1f} s), "
                 f"{run.succeeded} succeeded, overhead {1000 * run.overhead_per_task_s:.1f} ms/task")


@contextlib.contextmanager
def _executor(name: str, settings: BenchSettings, nodes: Path, result: BenchResult,
              progress: Progress) -> Iterator[Any]:  # fmt: skip
    if name == "local":
        yield None
        return
    with local_ray(settings.slots, settings.port_base) as (cluster, ray):
        from kisystem.executors.ray_executor import RayExecutor, RaySettings

        executor = RayExecutor(SleepingModels(), workspaces=nodes, settings=RaySettings(address=cluster.address))
        executor.connect()
        result.cluster = {"address": cluster.address, "slots": _declared(ray)}
        split = " + ".join(f"{n:g}" for n in result.cluster["slots"].values())
        progress(f"ray: two nodes at {cluster.address}, {split} slots of the simulated model")
        yield executor


@contextlib.contextmanager
def local_ray(slots: int, port_base: int = PORT_BASE) -> Iterator[tuple[Any, Any]]:
    """A head and a second node on this machine, ``slots`` slots of the simulated model split
    between them (each node with as many logical CPUs as it has slots); stopped on exit."""
    from kisystem.executors import require_ray
    from kisystem.executors.local_cluster import LocalCluster
    from kisystem.executors.ray_executor import model_resource

    ray = require_ray()
    if ray.is_initialized():  # ray.init would not join the new cluster, and our shutdown would end the other
        raise UsageError("this process is already connected to a Ray cluster; run the bench in a fresh one")
    head, second = (slots + 1) // 2, slots // 2
    temp = Path(tempfile.mkdtemp(prefix="kisystem-ray-"))  # short: Ray's socket paths live under it
    cluster = LocalCluster(temp, (port_base,), cpus=head)
    try:
        cluster.start_head({model_resource(SIM_MODEL): head})
        cluster.start_second({model_resource(SIM_MODEL): second})
        yield cluster, ray
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
        shutil.rmtree(temp, ignore_errors=True)


def _declared(ray: Any) -> dict[str, float]:
    """Node id -> its slots of the simulated model, as the cluster sees them."""
    from kisystem.executors.ray_executor import model_resource

    key = model_resource(SIM_MODEL)
    return {n["NodeID"]: n["Resources"].get(key, 0.0) for n in ray.nodes() if n.get("Alive")}


def parse_sizes(text: str) -> tuple[int, ...]:
    """``200,2000`` as (200, 2000)."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--tasks {text!r}: expected task counts separated by commas, e.g. 200,2000") from None
    if not sizes or min(sizes) < 1:
        raise UsageError(f"--tasks {text!r}: every task count must be at least 1")
    return sizes


def save(result: BenchResult, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=1))
    return path


# -- report -------------------------------------------------------------------------------


def tables(result: BenchResult) -> list[Any]:
    """The runs, then the ray / local ratios and the overhead's growth with the task count."""
    from rich.table import Table

    s = result.settings
    runs = Table(title=f"Executors: simulated generations (mean {s.mean_s:g} s, seed {s.seed}), {s.slots} slots")
    for col in ("executor", "tasks", "wall", "ideal", "tasks/s", "overhead/task", "succeeded", "warm-up"):
        runs.add_column(col, justify="left" if col == "executor" else "right")
    for r in result.runs:
        warm = result.warmups.get(r.executor)
        runs.add_row(r.executor, str(r.tasks), f"{r.wall_s:.1f} s", f"{r.ideal_s:.1f} s", f"{r.throughput:.2f}",
                     f"{1000 * r.overhead_per_task_s:.1f} ms", f"{r.succeeded}/{r.tasks}",
                     "-" if warm is None else f"{warm:.1f} s")
    out = [runs]
    rows = [(n, result.ratios(n)) for n in s.sizes]
    if any(ratio for _, ratio in rows):
        ratios = Table(title="ray ÷ local")
        for col in ("tasks", "throughput", "overhead per task"):
            ratios.add_column(col, justify="right")
        for n, ratio in rows:
            if ratio:
                ratios.add_row(str(n), f"{ratio['throughput_ray_over_local']:.3f}×",
                               f"{ratio['overhead_ray_over_local']:.2f}×")
        out.append(ratios)
    return out


def growth_lines(result: BenchResult) -> list[str]:
    sizes = sorted(result.settings.sizes)
    lines = []
    for name in result.settings.executors:
        growth = result.growth(name)
        if growth is not None:
            lines.append(f"{name}: overhead per task at {sizes[-1]:,} tasks is {growth:.2f}× that at {sizes[0]:,}")
    return lines
