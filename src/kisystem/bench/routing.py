"""`bench routing`: record real model outcomes once, then replay one task stream under several routing policies.

Record: for every task and every model of the route of the task's domain, ``k`` answers
(sample 0 greedy, sample j sampled with seed j, as the loop's j-th try on a model), each
built, tested and scored for real; cached as JSON so a replay needs no model.  The
recorded samples carry no fix feedback, so they approximate the loop's later tries.  One
table holds tasks of several domains (HumanEval, the task pack, Tests/Docs), each with
its domain's chain.

Replay: the same shuffled stream under each policy, simulating the loop: from the start
model, each model gets up to its own stop-loss (``ModelSpec.stoploss``, else
``stoploss_per_model``) samples, then the task escalates along the task's chain (an unrecoverable error aborts, severity >= 4 escalates at once, the
hybrid floor may lift the task after a failure, the iteration budget ends it; the
"stuck" rule is not modelled).  Cost is the generation, build and test seconds of the
samples used.  Each policy learns only from what it ran, in its own throw-away learning
database, with a clock advancing one hour per task.  The oracle knows every outcome and
takes the cheapest start that solves.

Besides solved, seconds and regret, each policy reports when the meta-supervisor's
evidence gate (rate >= 0.65 over >= 5 runs) first opened in its learning database, and
what its learned starts (off the route's start) cost against the static start on the
same tasks.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from kisystem.bench.cache import answers_path, shared_cache
from kisystem.bench.humaneval import humaneval_tasks
from kisystem.bench.sampling import judged_sample
from kisystem.config import OptimizationConfig
from kisystem.loop.attempt import Attempt
from kisystem.loop.session import loop_session
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import TaskSpec, load_tasks
from kisystem.models.inventory import Inventory, ModelSpec
from kisystem.paths import Paths
from kisystem.routing.hybrid import HybridDecision, HybridFloor
from kisystem.routing.meta import BIAS_MIN_RATE, BIAS_MIN_RUNS, MetaSupervisor
from kisystem.routing.policy import RoutingPolicy, SpecPolicy, StaticPolicy
from kisystem.routing.thompson import ThompsonPolicy
from kisystem.store.learning import LearningStore, RunResult
from kisystem.taskpack import load_pack

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
    """task id -> model -> samples; each task recorded on the chain of its domain."""

    domains: Mapping[str, str]  # task id -> domain
    chains: Mapping[str, tuple[str, ...]]  # domain -> its route's chain (of the models recorded)
    samples: Mapping[str, Mapping[str, tuple[Sample, ...]]]
    meta: Mapping = field(default_factory=dict)

    @classmethod
    def one_domain(cls, domain: str, chain: Sequence[str], samples: Mapping[str, Mapping[str, tuple[Sample, ...]]],
                   meta: Mapping | None = None) -> OutcomeTable:
        return cls(dict.fromkeys(samples, domain), {domain: tuple(chain)}, samples, meta or {})

    @property
    def tasks(self) -> list[str]:
        return list(self.samples)

    def chain(self, task: str) -> tuple[str, ...]:
        return self.chains[self.domains[task]]

    @property
    def models(self) -> list[str]:
        """Every model of the chains, those farthest from a chain's end (the cheap starts) first."""
        reach = {m: max(len(c) - c.index(m) for c in self.chains.values() if m in c)
                 for c in self.chains.values() for m in c}
        return sorted(reach, key=lambda m: -reach[m])

    def to_json(self) -> dict:
        rows = {t: {m: [asdict(s) for s in ss] for m, ss in per.items()} for t, per in self.samples.items()}
        return {"chains": {d: list(c) for d, c in self.chains.items()}, "domains": dict(self.domains),
                "meta": dict(self.meta), "samples": rows}

    @classmethod
    def from_json(cls, data: Mapping) -> OutcomeTable:
        rows = {t: {m: tuple(Sample(**s) for s in ss) for m, ss in per.items()} for t, per in data["samples"].items()}
        if "chain" in data:  # a one-domain file of the first version
            return cls.one_domain(data["domain"], data["chain"], rows, data.get("meta", {}))
        return cls(data["domains"], {d: tuple(c) for d, c in data["chains"].items()}, rows, data.get("meta", {}))


def task_set_key(tasks: Sequence[str], chains: Mapping[str, Sequence[str]]) -> str:
    """A short hash of the task ids (in order) and the chains they are recorded on."""
    text = json.dumps([list(tasks), {d: list(c) for d, c in sorted(chains.items())}])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def cache_path(home: Path, tasks: Sequence[str], chains: Mapping[str, Sequence[str]], k: int) -> Path:
    return home / "bench" / f"routing-outcomes-{task_set_key(tasks, chains)}-k{k}.json"


def save_table(table: OutcomeTable, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(table.to_json(), indent=1))
    tmp.replace(path)
    return path


def load_table(path: Path) -> OutcomeTable:
    return OutcomeTable.from_json(json.loads(path.read_text()))


# -- the task mix -------------------------------------------------------------------------

TESTSDOCS_DIR = Path(__file__).resolve().parents[3] / "examples" / "testsdocs"


def mixed_tasks(humaneval: tuple[int, int] | None, pack: bool = False,
                testsdocs: Path | None = None) -> tuple[list[TaskSpec], str]:
    """HumanEval problems ``start:stop``, the task pack's CPU tasks (no CUDA: no GPU), the Tests/Docs
    specs of ``testsdocs``; and a title naming the mix ("HumanEval 0:20 + pack 7 + testsdocs 5")."""
    tasks, parts = [], []
    if humaneval:
        tasks += humaneval_tasks(*humaneval)
        parts.append(f"HumanEval {humaneval[0]}:{humaneval[1]}")
    if pack:
        found = [t for t in load_pack() if t.language != "cuda"]
        tasks += found
        parts.append(f"pack {len(found)}")
    if testsdocs:
        found = load_tasks([testsdocs])
        tasks += found
        parts.append(f"testsdocs {len(found)}")
    return tasks, " + ".join(parts)


# -- recording ----------------------------------------------------------------------------

Progress = Callable[[str, Mapping[str, tuple[Sample, ...]]], None]


async def record_table(config: OptimizationConfig, inventory: Inventory, paths: Paths, tasks: Sequence[TaskSpec],
                       k: int, out: Path, progress: Progress, warn: Callable[[str], None]) -> OutcomeTable:
    """Record ``k`` samples per task and model of its domain's route; resumes from ``out``'s partial file
    and saves after every task.  Tasks of a domain without an available model are left out."""
    partial = out.with_suffix(".partial.json")
    db = out.parent / "routing-record.db"  # keeps recording out of the learning database
    async with loop_session(config, inventory, paths, db=db, warn=warn) as sup:
        with shared_cache(sup, answers_path(paths.home)):
            chains = {d: tuple(m for m in inventory.route(d).chain if m in (sup.available or ()))
                      for d in dict.fromkeys(t.domain for t in tasks)}
            for domain in (d for d, c in chains.items() if not c):
                warn(f"no model of route {domain!r} is available: its tasks are left out")
            chains = {d: c for d, c in chains.items() if c}
            tasks = [t for t in tasks if t.domain in chains]
            domains = {t.id: t.domain for t in tasks}
            done = _resumable(partial, chains)
            meta = {"inventory": inventory.source, "k": k, "target_score": config.target_score}
            for task in tasks:
                if task.id not in done:
                    done[task.id] = {m: await record_samples(sup, task, inventory.model(m), k, config)
                                     for m in chains[task.domain]}
                    save_table(OutcomeTable({t: domains[t] for t in done}, chains, done, meta), partial)
                progress(task.id, done[task.id])
    table = OutcomeTable(domains, chains, {t.id: done[t.id] for t in tasks}, meta)
    save_table(table, out)
    partial.unlink(missing_ok=True)
    return table


def _resumable(partial: Path, chains: Mapping[str, tuple[str, ...]]) -> dict[str, Mapping[str, tuple[Sample, ...]]]:
    """Tasks a killed recording finished on the same models as now."""
    if not partial.exists():
        return {}
    table = load_table(partial)
    return {t: per for t, per in table.samples.items() if tuple(per) == chains.get(table.domains[t])}


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

StopLosses = Mapping[str, int]
"""A model's own stop-loss where it has one (``ModelSpec.stoploss``), as the loop's ``StopLossRouter`` takes it."""


def own_stoplosses(inventory: Inventory, models: Iterable[str]) -> dict[str, int]:
    """The models' own stop-losses, for those of the inventory that have one."""
    return {m: n for m in models if m in inventory.models and (n := inventory.models[m].stoploss)}


def default_k(stoploss: int, per_model: StopLosses, chains: Mapping[str, Sequence[str]]) -> int:
    """The largest stop-loss any model of the chains uses: enough samples for every stint."""
    return max((per_model.get(m, stoploss) for c in chains.values() for m in c), default=stoploss)


def simulate(table: OutcomeTable, task: str, start: str, stoploss: int, budget: int,
             floor: Floor | None = None, per_model: StopLosses | None = None) -> TaskRun:
    """The loop's run of ``task`` from ``start`` along the task's chain, replayed from the recorded samples.

    Each model gets ``per_model[model]`` failed tries where it has its own stop-loss, else ``stoploss``.
    """
    chain, own = table.chain(task), per_model or {}
    index, stints, used = chain.index(start), [], 0
    while index < len(chain):
        model = chain[index]
        stint, end, jump = _stint(table.samples[task][model], model, index, own.get(model, stoploss),
                                  budget - used, floor)
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


def oracle_start(table: OutcomeTable, task: str, stoploss: int, budget: int, floor: Floor | None = None,
                 per_model: StopLosses | None = None) -> str:
    """The start whose run solves at the least cost; the cheapest start when none solves."""
    runs = [simulate(table, task, m, stoploss, budget, floor, per_model) for m in table.chain(task)]
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
    per_model: StopLosses | None = None
    name: str = "oracle"

    def start(self, task: TaskSpec, chain: Sequence[str]) -> str:
        floor = self.floor_for(task, chain) if self.floor_for else None
        return oracle_start(self.table, task.id, self.stoploss, self.budget, floor, self.per_model)

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
    meta: MetaSupervisor | None = None  # reads ``store``: when the evidence gate opens


def write_run(store: LearningStore, task: TaskSpec, run: TaskRun) -> None:
    """The simulated run as the loop would have logged it."""
    run_id = store.start_run(task.id, task.domain, run.start)
    store.finish_run(run_id, RunResult(
        model=run.stints[-1].model, iter=sum(s.samples for s in run.stints),
        score_final=max(s.score for s in run.stints), outcome=run.outcome,  # type: ignore[arg-type]
        models_tried=tuple(s.model for s in run.stints), wall_s=run.cost_s))


@contextlib.contextmanager
def standard_lanes(config: OptimizationConfig, table: OutcomeTable, seed: int, floor: bool = True,
                   per_model: StopLosses | None = None) -> Iterator[list[Lane]]:
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
            return Lane(make(store, clock, floor_for), clock, store, floor_for, MetaSupervisor(store, config, clock))

        yield [lane("static", lambda store, clock, f: PolicyArm(StaticPolicy())),
               lane("spec", lambda store, clock, f: PolicyArm(SpecPolicy(store, config, clock))),
               lane("thompson", lambda store, clock, f: thompson_arm(seed, clock)),
               lane("oracle", lambda store, clock, f: OracleArm(table, stoploss, budget, f, per_model))]


# -- the replay ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GateOpening:
    """The evidence gate's first opening for one (domain, model) in a lane's learning database."""

    domain: str
    model: str
    after: int  # stream tasks finished when it first opened: the bias steers from the next task on
    open_at_end: bool
    route_start: bool  # the model starts the route anyway: the bias changes no start


@dataclass(frozen=True)
class LearnedStarts:
    """The tasks a policy started off the route's start, against the static start on the same tasks."""

    tasks: int = 0
    solved: int = 0
    cost_s: float = 0.0
    static_solved: int = 0
    static_cost_s: float = 0.0

    @property
    def saved_s(self) -> float:
        return round(self.static_cost_s - self.cost_s, 3)


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    solved: int
    attempted: int
    cost_s: float
    quarter_solve_rate: tuple[float, ...]
    quarter_cost_s: tuple[float, ...]  # seconds per task in each quarter of the stream
    starts: dict[str, int]
    learned: LearnedStarts = LearnedStarts()
    gate: tuple[GateOpening, ...] = ()

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
                stoploss: int, budget: int, per_model: StopLosses | None = None) -> PolicyResult:
    runs: list[TaskRun] = []
    off_start: list[tuple[TaskRun, TaskRun]] = []  # (the run, the static start's run) where it started elsewhere
    opened: dict[tuple[str, str], int] = {}  # (domain, model) -> stream position the gate first opened at
    for position, task_id in enumerate(stream, 1):
        task, chain = specs[task_id], table.chain(task_id)
        start = lane.arm.start(task, chain)
        if start not in chain:
            raise ValueError(f"policy {lane.arm.name} chose {start!r}, not in chain {chain}")
        floor = lane.floor_for(task, chain) if lane.floor_for else None
        run = simulate(table, task_id, start, stoploss, budget, floor, per_model)
        lane.arm.learn(task, run)
        if lane.store is not None:
            write_run(lane.store, task, run)
        lane.clock.advance()
        runs.append(run)
        if start != chain[0]:
            off_start.append((run, simulate(table, task_id, chain[0], stoploss, budget, floor, per_model)))
        for pair in (lane.meta.recommend_model_bias() if lane.meta else {}).items():
            opened.setdefault(pair, position)
    return replace(summarize(lane.arm.name, runs), learned=learned_starts(off_start),
                   gate=_gate(lane.meta, opened, table))


def learned_starts(pairs: Sequence[tuple[TaskRun, TaskRun]]) -> LearnedStarts:
    """(a run started off the route's start, the static start's run of the same task) summed up."""
    return LearnedStarts(len(pairs), sum(r.solved for r, _ in pairs), round(sum(r.cost_s for r, _ in pairs), 3),
                         sum(s.solved for _, s in pairs), round(sum(s.cost_s for _, s in pairs), 3))


def _gate(meta: MetaSupervisor | None, opened: Mapping[tuple[str, str], int],
          table: OutcomeTable) -> tuple[GateOpening, ...]:
    final = meta.recommend_model_bias() if meta else {}
    return tuple(GateOpening(d, m, after, final.get(d) == m, table.chains[d][0] == m)
                 for (d, m), after in opened.items())


def summarize(name: str, runs: Sequence[TaskRun]) -> PolicyResult:
    parts = [runs[len(runs) * q // QUARTERS:len(runs) * (q + 1) // QUARTERS] for q in range(QUARTERS)]
    return PolicyResult(
        name, sum(r.solved for r in runs), len(runs), round(sum(r.cost_s for r in runs), 3),
        tuple(round(sum(r.solved for r in p) / len(p), 3) if p else 0.0 for p in parts),
        tuple(round(sum(r.cost_s for r in p) / len(p), 3) if p else 0.0 for p in parts),
        dict(Counter(r.start for r in runs)))


def replay(config: OptimizationConfig, table: OutcomeTable, specs: Mapping[str, TaskSpec],
           stream: Sequence[str], seed: int, floor: bool = True,
           per_model: StopLosses | None = None) -> list[PolicyResult]:
    """Every standard lane over the same stream; static first, oracle last."""
    stoploss, budget = config.stoploss_per_model, config.max_optimization_iterations
    with standard_lanes(config, table, seed, floor, per_model) as lanes:
        return [replay_lane(lane, table, specs, stream, stoploss, budget, per_model) for lane in lanes]


def comparison(results: Sequence[PolicyResult]) -> list[dict]:
    """Each policy's figures with ratios to the static route and regret against the oracle."""
    static = next(r for r in results if r.policy == "static")
    oracle = next(r for r in results if r.policy == "oracle")
    return [{**asdict(r), "solved_per_minute": round(r.solved_per_minute, 4),
             "learned": {**asdict(r.learned), "saved_s": r.learned.saved_s},
             "solved_vs_static": _ratio(r.solved, static.solved),
             "cost_vs_static": _ratio(r.cost_s, static.cost_s),
             "solved_per_minute_vs_static": _ratio(r.solved_per_minute, static.solved_per_minute),
             "regret_solved": oracle.solved - r.solved, "regret_s": round(r.cost_s - oracle.cost_s, 3)}
            for r in results]


def save_replay(path: Path, meta: Mapping, rows: Sequence[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, "policies": list(rows), "verdict": verdict(rows),
                                "gate": gate_report(rows), "evidence": evidence_lines(rows)}, indent=2))
    return path


def gate_report(rows: Sequence[dict], policy: str = "spec") -> dict | None:
    """Where the meta-supervisor's evidence gate opened under ``policy``; None where it never did."""
    gate = next((r["gate"] for r in rows if r["policy"] == policy), None)
    if not gate:
        return None
    return {"policy": policy, "min_rate": BIAS_MIN_RATE, "min_runs": BIAS_MIN_RUNS,
            "open_at_end": {g["domain"]: g["model"] for g in gate if g["open_at_end"]}, "opened": list(gate)}


def evidence_lines(rows: Sequence[dict], policy: str = "spec") -> list[str]:
    """The gate under ``policy``, and what each learned start saved against the static start."""
    report = gate_report(rows, policy)
    head = f"evidence gate (rate >= {BIAS_MIN_RATE} over >= {BIAS_MIN_RUNS} runs) under {policy}:"
    if report is None:
        lines = [f"{head} never opened."]
    else:
        lines = [f"{head} " + "; ".join(_opening(g) for g in report["opened"]) + "."]
    for r in rows:
        if r["policy"] != "static":
            lines.append(_learned_line(r["policy"], r["learned"]))
    return lines


def _opening(g: Mapping) -> str:
    notes = [n for n, on in (("closed again", not g["open_at_end"]), ("the route's start anyway", g["route_start"]))
             if on]
    return f"{g['domain']} → {g['model']} after task {g['after']}" + (f" ({', '.join(notes)})" if notes else "")


def _learned_line(policy: str, learned: Mapping) -> str:
    if not learned["tasks"]:
        return f"learned start, {policy}: every task started on its route's start."
    saved = learned["saved_s"]
    gain = f"saves {saved:.0f} s" if saved >= 0 else f"costs {-saved:.0f} s more"
    return (f"learned start, {policy}: {learned['tasks']} tasks off the route's start, {learned['solved']} solved in "
            f"{learned['cost_s']:.0f} s; the static start solved {learned['static_solved']} in "
            f"{learned['static_cost_s']:.0f} s: the learned start {gain}.")


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
