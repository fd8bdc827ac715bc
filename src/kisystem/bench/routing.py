"""`bench routing`: record real model outcomes once, then replay one task stream under several routing policies.

Record: for every task and every model of the task's route, ``k`` answers (sample 0
greedy, sample j sampled with seed j, as the loop's j-th try on a model), each built,
tested and scored for real; cached as JSON so a replay needs no model.  The recorded
samples carry no fix feedback, so they approximate the loop's later tries.

Replay: the same shuffled stream under each policy, simulating the loop: from the start
model, each model gets up to ``stoploss_per_model`` samples, then the task escalates
along the chain (an unrecoverable error aborts, severity >= 4 escalates at once, the
hybrid floor may lift the task after a failure, the iteration budget ends it; the
"stuck" rule is not modelled).  Cost is the generation, build and test seconds of the
samples used.  Each policy learns only from what it ran, in its own throw-away learning
database, with a clock advancing one hour per task.  The oracle knows every outcome and
takes the cheapest start that solves.
"""

from __future__ import annotations

import contextlib
import json
import random
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from kisystem.bench.sampling import judged_sample
from kisystem.config import OptimizationConfig
from kisystem.loop.attempt import Attempt
from kisystem.loop.session import loop_session
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.inventory import Inventory, ModelSpec
from kisystem.paths import Paths
from kisystem.routing.hybrid import HybridDecision, HybridFloor
from kisystem.routing.policy import RoutingPolicy, SpecPolicy, StaticPolicy
from kisystem.routing.thompson import ThompsonPolicy
from kisystem.store.learning import LearningStore, RunResult

TASK_STEP = timedelta(hours=1)  # simulated time between tasks, so decays and recency see a history
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
QUARTERS = 4


# -- the recorded outcome table -----------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One recorded answer of one model to one task."""

    solved: bool
    score: float
    gen_s: float
    build_s: float = 0.0
    test_s: float = 0.0
    tokens: int = 0
    severity: int = 0
    recoverable: bool = True
    error_type: str | None = None

    @property
    def cost_s(self) -> float:
        return self.gen_s + self.build_s + self.test_s


@dataclass(frozen=True)
class OutcomeTable:
    """task id -> model -> samples, for one domain's chain."""

    domain: str
    chain: tuple[str, ...]
    samples: Mapping[str, Mapping[str, tuple[Sample, ...]]]
    meta: Mapping = field(default_factory=dict)

    @property
    def tasks(self) -> list[str]:
        return list(self.samples)

    def to_json(self) -> dict:
        rows = {t: {m: [asdict(s) for s in ss] for m, ss in per.items()} for t, per in self.samples.items()}
        return {"domain": self.domain, "chain": list(self.chain), "meta": dict(self.meta), "samples": rows}

    @classmethod
    def from_json(cls, data: Mapping) -> OutcomeTable:
        rows = {t: {m: tuple(Sample(**s) for s in ss) for m, ss in per.items()} for t, per in data["samples"].items()}
        return cls(data["domain"], tuple(data["chain"]), rows, data.get("meta", {}))


def cache_path(home: Path, start: int, stop: int, k: int) -> Path:
    return home / "bench" / f"routing-outcomes-{start}-{stop}-k{k}.json"


def save_table(table: OutcomeTable, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table.to_json(), indent=1))
    tmp.replace(path)
    return path


def load_table(path: Path) -> OutcomeTable:
    return OutcomeTable.from_json(json.loads(path.read_text()))


# -- recording ----------------------------------------------------------------------------

Progress = Callable[[str, Mapping[str, tuple[Sample, ...]]], None]


async def record_table(config: OptimizationConfig, inventory: Inventory, paths: Paths, tasks: Sequence[TaskSpec],
                       k: int, out: Path, progress: Progress, warn: Callable[[str], None]) -> OutcomeTable:
    """Record ``k`` samples per task and model; resumes from ``out``'s partial file and saves after every task."""
    partial = out.with_suffix(".partial.json")
    db = out.parent / "routing-record.db"  # keeps recording out of the learning database
    async with loop_session(config, inventory, paths, db=db, warn=warn) as sup:
        domain = tasks[0].domain
        chain = tuple(m for m in inventory.route(domain).chain if m in (sup.available or ()))
        done = _resumable(partial, chain)
        meta = {"inventory": inventory.source, "k": k, "target_score": config.target_score}
        for task in tasks:
            if task.id not in done:
                done[task.id] = {m: await record_samples(sup, task, inventory.model(m), k, config) for m in chain}
                save_table(OutcomeTable(domain, chain, done, meta), partial)
            progress(task.id, done[task.id])
    table = OutcomeTable(domain, chain, {t.id: done[t.id] for t in tasks}, meta)
    save_table(table, out)
    partial.unlink(missing_ok=True)
    return table


def _resumable(partial: Path, chain: tuple[str, ...]) -> dict[str, Mapping[str, tuple[Sample, ...]]]:
    """Tasks a killed recording finished, if it recorded the same models."""
    if not partial.exists():
        return {}
    table = load_table(partial)
    return dict(table.samples) if table.chain == chain else {}


async def record_samples(sup: Supervisor, task: TaskSpec, spec: ModelSpec, k: int,
                         config: OptimizationConfig) -> tuple[Sample, ...]:
    run_id = f"bench-routing-{uuid.uuid4().hex[:12]}"
    target = task.target_score if task.target_score is not None else config.target_score
    async with sup.attempts.task_run(task, run_id):
        samples = tuple([_sample(await judged_sample(sup, task, spec, j, run_id), target) for j in range(k)])
    sup.attempts.retire(run_id, solved=any(s.solved for s in samples))
    return samples


def _sample(attempt: Attempt, target: float) -> Sample:
    failure = attempt.failure
    return Sample(attempt.score >= target, attempt.score, round(attempt.t_generate, 3), round(attempt.t_build, 3),
                  round(attempt.t_test, 3), attempt.tokens_prompt + attempt.tokens_completion,
                  failure.severity if failure else 0, failure.recoverable if failure else True,
                  failure.error_type if failure else None)


# -- simulating the loop ------------------------------------------------------------------


@dataclass(frozen=True)
class StintRun:
    model: str
    solved: bool
    seconds: float
    samples: int
    score: float


@dataclass(frozen=True)
class TaskRun:
    task: str
    start: str
    solved: bool
    cost_s: float
    outcome: str  # success, exhausted, aborted, failed (budget)
    stints: tuple[StintRun, ...]


Floor = Callable[[int, int, str | None], int]
"""(chain index, fails on that model, last error type) -> the index to run at: the loop's hybrid floor."""


def simulate(table: OutcomeTable, task: str, start: str, stoploss: int, budget: int,
             floor: Floor | None = None) -> TaskRun:
    """The loop's run of ``task`` from ``start``, replayed from the recorded samples."""
    index, stints, used = table.chain.index(start), [], 0
    while index < len(table.chain):
        model = table.chain[index]
        stint, end, jump = _stint(table.samples[task][model], model, index, stoploss, budget - used, floor)
        stints.append(stint)
        used += stint.samples
        if end:
            return _task_run(task, start, stints, end)
        index = jump if jump is not None else index + 1
    return _task_run(task, start, stints, "exhausted")


def _stint(samples: Sequence[Sample], model: str, index: int, stoploss: int, left: int,
           floor: Floor | None) -> tuple[StintRun, str | None, int | None]:
    """One model's turn: the stint, how the task ends (or None), and the floor's jump (or None: next model)."""
    used: list[Sample] = []
    end = jump = None
    for fails, sample in enumerate(samples[:max(0, min(stoploss, left))], 1):
        used.append(sample)
        if sample.solved or not sample.recoverable:
            end = "success" if sample.solved else "aborted"
            break
        if sample.severity >= 4 or fails >= stoploss:
            break
        target = floor(index, fails, sample.error_type) if floor else index
        if target > index:  # the hybrid floor lifts a struggling task before its stop-loss
            jump = target
            break
    if end is None and len(used) >= left:
        end = "failed"
    best = max((s.score for s in used), default=0.0)
    return StintRun(model, end == "success", sum(s.cost_s for s in used), len(used), best), end, jump


def _task_run(task: str, start: str, stints: list[StintRun], outcome: str) -> TaskRun:
    return TaskRun(task, start, outcome == "success", sum(s.seconds for s in stints), outcome, tuple(stints))


def oracle_start(table: OutcomeTable, task: str, stoploss: int, budget: int, floor: Floor | None = None) -> str:
    """The start whose run solves at the least cost; the cheapest start when none solves."""
    runs = [simulate(table, task, m, stoploss, budget, floor) for m in table.chain]
    return min(runs, key=lambda r: (not r.solved, r.cost_s)).start


FloorFor = Callable[[TaskSpec, Sequence[str]], Floor]


def hybrid_floor(config: OptimizationConfig) -> FloorFor:
    """The loop's capability floor after a failure: the hybrid decision with a neutral meta score.

    The live loop's floor also weighs the meta bias of its history; here every policy
    runs under the same loop, so that only the start differs and the oracle stays an
    upper bound.
    """
    floor = HybridFloor(HybridDecision(None, config.hybrid_decision_weights))

    def for_task(task: TaskSpec, chain: Sequence[str]) -> Floor:
        return lambda index, fails, error: floor.floor(task, chain, index, fails, error)

    return for_task


# -- policies under replay ----------------------------------------------------------------


class StepClock:
    """A fake clock the replay advances by ``step`` after every task."""

    def __init__(self, start: datetime = EPOCH, step: timedelta = TASK_STEP) -> None:
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        return self.now

    def advance(self) -> None:
        self.now += self.step


class Arm(Protocol):
    name: str

    def start(self, task: TaskSpec, chain: Sequence[str]) -> str: ...

    def learn(self, task: TaskSpec, run: TaskRun) -> None: ...


@dataclass
class PolicyArm:
    """A routing policy, and how it hears about each finished task."""

    policy: RoutingPolicy
    on_run: Callable[[TaskSpec, TaskRun], None] = lambda task, run: None
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.policy.name

    def start(self, task: TaskSpec, chain: Sequence[str]) -> str:
        return self.policy.start_model(task, chain)

    def learn(self, task: TaskSpec, run: TaskRun) -> None:
        self.on_run(task, run)


@dataclass
class OracleArm:
    """Knows every recorded outcome: starts where the run solves at the least cost."""

    table: OutcomeTable
    stoploss: int
    budget: int
    floor_for: FloorFor | None = None
    name: str = "oracle"

    def start(self, task: TaskSpec, chain: Sequence[str]) -> str:
        floor = self.floor_for(task, chain) if self.floor_for else None
        return oracle_start(self.table, task.id, self.stoploss, self.budget, floor)

    def learn(self, task: TaskSpec, run: TaskRun) -> None:
        pass


def thompson_arm(seed: int, clock: StepClock) -> PolicyArm:
    policy = ThompsonPolicy(random.Random(seed), clock)

    def observe(task: TaskSpec, run: TaskRun) -> None:
        for stint in run.stints:
            policy.observe(task.domain, stint.model, stint.solved, stint.seconds)

    return PolicyArm(policy, observe)


@dataclass
class Lane:
    """One policy's world in the replay: its own clock and learning database, as if it ran alone."""

    arm: Arm
    clock: StepClock
    store: LearningStore | None = None
    floor_for: FloorFor | None = None


def write_run(store: LearningStore, task: TaskSpec, run: TaskRun) -> None:
    """The simulated run as the loop would have logged it."""
    run_id = store.start_run(task.id, task.domain, run.start)
    store.finish_run(run_id, RunResult(
        model=run.stints[-1].model, iter=sum(s.samples for s in run.stints),
        score_final=max(s.score for s in run.stints), outcome=run.outcome,  # type: ignore[arg-type]
        models_tried=tuple(s.model for s in run.stints), wall_s=run.cost_s))


@contextlib.contextmanager
def standard_lanes(config: OptimizationConfig, table: OutcomeTable, seed: int,
                   floor: bool = True) -> Iterator[list[Lane]]:
    """static, spec, thompson and the oracle, each over a throw-away learning database.

    With ``floor`` every lane applies the loop's hybrid floor after a failure
    (:func:`hybrid_floor`), as the live supervisor does whatever the start policy.
    """
    stoploss, budget = config.stoploss_per_model, config.max_optimization_iterations
    floor_for = hybrid_floor(config) if floor else None
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="kisystem-replay-")))

        def lane(name: str, make: Callable[[LearningStore, StepClock, FloorFor | None], Arm]) -> Lane:
            clock = StepClock()
            store = stack.enter_context(LearningStore.open(tmp / f"{name}.db", clock=clock))
            return Lane(make(store, clock, floor_for), clock, store, floor_for)

        yield [lane("static", lambda store, clock, f: PolicyArm(StaticPolicy())),
               lane("spec", lambda store, clock, f: PolicyArm(SpecPolicy(store, config, clock))),
               lane("thompson", lambda store, clock, f: thompson_arm(seed, clock)),
               lane("oracle", lambda store, clock, f: OracleArm(table, stoploss, budget, f))]


# -- the replay ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    solved: int
    attempted: int
    cost_s: float
    quarter_solve_rate: tuple[float, ...]
    quarter_cost_s: tuple[float, ...]  # seconds per task in each quarter of the stream
    starts: dict[str, int]

    @property
    def solved_per_minute(self) -> float:
        return self.solved / (self.cost_s / 60) if self.cost_s else 0.0


def task_stream(tasks: Sequence[str], length: int, seed: int) -> list[str]:
    """Passes over ``tasks``, each shuffled with ``seed``, cut to ``length``."""
    rng, stream = random.Random(seed), []
    while len(stream) < length:
        batch = list(tasks)
        rng.shuffle(batch)
        stream += batch
    return stream[:length]


def replay_lane(lane: Lane, table: OutcomeTable, specs: Mapping[str, TaskSpec], stream: Sequence[str],
                stoploss: int, budget: int) -> PolicyResult:
    runs = []
    for task_id in stream:
        task = specs[task_id]
        start = lane.arm.start(task, table.chain)
        if start not in table.chain:
            raise ValueError(f"policy {lane.arm.name} chose {start!r}, not in chain {table.chain}")
        floor = lane.floor_for(task, table.chain) if lane.floor_for else None
        run = simulate(table, task_id, start, stoploss, budget, floor)
        lane.arm.learn(task, run)
        if lane.store is not None:
            write_run(lane.store, task, run)
        lane.clock.advance()
        runs.append(run)
    return summarize(lane.arm.name, runs)


def summarize(name: str, runs: Sequence[TaskRun]) -> PolicyResult:
    parts = [runs[len(runs) * q // QUARTERS:len(runs) * (q + 1) // QUARTERS] for q in range(QUARTERS)]
    return PolicyResult(
        name, sum(r.solved for r in runs), len(runs), round(sum(r.cost_s for r in runs), 3),
        tuple(round(sum(r.solved for r in p) / len(p), 3) if p else 0.0 for p in parts),
        tuple(round(sum(r.cost_s for r in p) / len(p), 3) if p else 0.0 for p in parts),
        dict(Counter(r.start for r in runs)))


def replay(config: OptimizationConfig, table: OutcomeTable, specs: Mapping[str, TaskSpec],
           stream: Sequence[str], seed: int, floor: bool = True) -> list[PolicyResult]:
    """Every standard lane over the same stream; static first, oracle last."""
    stoploss, budget = config.stoploss_per_model, config.max_optimization_iterations
    with standard_lanes(config, table, seed, floor) as lanes:
        return [replay_lane(lane, table, specs, stream, stoploss, budget) for lane in lanes]


def comparison(results: Sequence[PolicyResult]) -> list[dict]:
    """Each policy's figures with ratios to the static route and regret against the oracle."""
    static = next(r for r in results if r.policy == "static")
    oracle = next(r for r in results if r.policy == "oracle")
    return [{**asdict(r), "solved_per_minute": round(r.solved_per_minute, 4),
             "solved_vs_static": _ratio(r.solved, static.solved),
             "cost_vs_static": _ratio(r.cost_s, static.cost_s),
             "solved_per_minute_vs_static": _ratio(r.solved_per_minute, static.solved_per_minute),
             "regret_solved": oracle.solved - r.solved, "regret_s": round(r.cost_s - oracle.cost_s, 3)}
            for r in results]


def save_replay(path: Path, meta: Mapping, rows: Sequence[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "policies": list(rows), "verdict": verdict(rows)}, indent=2))
    return path


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


def verdict(rows: Sequence[dict]) -> list[str]:
    """One plain sentence per learning policy: does it pay against the static route?"""
    static = next(r for r in rows if r["policy"] == "static")
    oracle = next(r for r in rows if r["policy"] == "oracle")
    lines = [] if oracle["solved"] else ["No start solves any task of this stream: only the seconds differ."]
    for r in rows:
        if r["policy"] in ("static", "oracle"):
            continue
        more, dt = r["solved"] - static["solved"], r["cost_s"] - static["cost_s"]
        pct = f" ({100 * dt / static['cost_s']:+.0f} %)" if static["cost_s"] else ""
        lines.append(f"{r['policy']}: {more:+d} solved, {dt:+.0f} s{pct} against static: {_judge(more, dt)}.")
    return lines


def _judge(more_solved: int, extra_s: float) -> str:
    if more_solved >= 0 and extra_s <= 0:
        return "learning pays" if (more_solved, extra_s) != (0, 0) else "no difference"
    if more_solved <= 0 and extra_s >= 0:
        return "learning does not pay"
    return "a trade: more solved for more time" if more_solved > 0 else "a trade: fewer solved for less time"
