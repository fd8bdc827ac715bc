"""`bench ensemble`: single models, the full ensemble and the adaptive ensemble on the same problems.

Per HumanEval problem, in one process and one fleet:

- ``single M``: model M's greedy answer to the plain prompt (the request of ``bench humaneval``'s
  single arm, so the shared answer cache usually holds it); the best of these is the "best
  single model".
- ``full ensemble``: every model of the fleet, the expert tier's samples, every member awaited
  (no early stop); the best judged candidate wins.
- ``adaptive ensemble``: the task's classified tier over its route's models, stopping at the
  first candidate that passes, with the fallback (:class:`kisystem.ensemble.ensemble.Ensemble`).

Every candidate is judged by the task's judge.  An ensemble arm picking by the tests is pass@k
over its members, so each also reports ``blind``: whether the answer picked *without* the
tests (agreement by behaviour on the prompt's examples, :func:`kisystem.ensemble.consensus.agree`)
passes.  Figures per arm: solved, wall time, model-seconds (generation time; a dropped member's
time until it was dropped), solved per model-minute; for the ensembles the members asked, the
fan-out's wall time against ``serial``: the same members' work one after another (each member that
ended on its own counted at its model's single-shot time on the problem, alone on the machine; a
member dropped early at the time it ran), and for the early stop the members dropped and their
``saved`` model-seconds (their model's single-shot time less the time they ran).

Answers come through the benchmarks' shared answer cache; a cached answer takes its recorded
time again (:class:`Paced`), so that a fan-out of replayed answers ends when it did live.  Each
finished problem is appended to a progress file, so an interrupted run resumes after it.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rich.table import Table

from kisystem.bench.cache import BenchCache, shared_cache
from kisystem.bench.sampling import judged_sample
from kisystem.config import OptimizationConfig
from kisystem.ensemble.classifier import classify
from kisystem.ensemble.consensus import BehaviourRunner, agree
from kisystem.ensemble.ensemble import Ensemble, Round, member_seconds
from kisystem.ensemble.members import Tier
from kisystem.ensemble.record import EARLY
from kisystem.loop.session import loop_session
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.base import Generation, GenerationRequest, OnText
from kisystem.models.inventory import Inventory
from kisystem.paths import Paths

FULL = "full ensemble"
ADAPTIVE = "adaptive ensemble"
SINGLE = "single "


@dataclass
class Outcome:
    """One arm on one problem."""

    solved: bool = False
    blind: bool | None = None  # the answer picked without the tests passes (ensembles only)
    wall_s: float = 0.0
    model_s: float = 0.0
    members: int = 0
    dropped: int = 0  # members dropped at the early stop
    saved_s: float = 0.0  # their model-seconds not spent
    fanout_wall_s: float = 0.0
    serial_s: float = 0.0  # the members' models alone, one after another
    tier: str = ""


@dataclass
class ArmTotals:
    arm: str
    problems: int = 0
    solved: int = 0
    blind: int = 0
    wall_s: float = 0.0
    model_s: float = 0.0
    members: int = 0
    dropped: int = 0
    early_stops: int = 0
    saved_s: float = 0.0
    fanout_wall_s: float = 0.0
    serial_s: float = 0.0
    tiers: dict[str, int] = field(default_factory=dict)
    solved_ids: list[str] = field(default_factory=list)

    def add(self, task: str, o: Outcome) -> None:
        self.problems += 1
        self.solved += o.solved
        self.blind += bool(o.blind)
        self.wall_s += o.wall_s
        self.model_s += o.model_s
        self.members += o.members
        self.dropped += o.dropped
        self.early_stops += o.dropped > 0
        self.saved_s += o.saved_s
        self.fanout_wall_s += o.fanout_wall_s
        self.serial_s += o.serial_s
        if o.tier:
            self.tiers[o.tier] = self.tiers.get(o.tier, 0) + 1
        if o.solved:
            self.solved_ids.append(task)

    @property
    def ensemble(self) -> bool:
        return not self.arm.startswith(SINGLE)

    @property
    def solved_per_model_minute(self) -> float:
        return self.solved / (self.model_s / 60) if self.model_s else 0.0

    @property
    def speedup(self) -> float | None:
        """How much faster the concurrent fan-out was than its members one after another."""
        return self.serial_s / self.fanout_wall_s if self.fanout_wall_s else None

    def to_dict(self) -> dict[str, Any]:
        speedup = self.speedup
        return {**asdict(self), "solved_per_model_minute": round(self.solved_per_model_minute, 3),
                "speedup": round(speedup, 3) if speedup is not None else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArmTotals:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def single_outcome(attempt: Any, target: float) -> Outcome:
    """A single shot: its judged attempt's figures."""
    return Outcome(solved=attempt.score >= target, wall_s=attempt.t_generate + attempt.t_build + attempt.t_test,
                   model_s=attempt.t_generate, members=1, serial_s=attempt.t_generate)


def ensemble_outcome(rounds: Sequence[Round], alone: dict[str, float], target: float, wall_s: float,
                     blind: bool | None) -> Outcome:
    """An ensemble arm's figures from its rounds; ``alone``: each model's single-shot seconds on the problem."""
    answers = [(a, r.ran.get(a.member, 0.0), member_seconds(a, r.ran)) for r in rounds for a in r.fanout.answers]
    early = [(a, ran) for a, ran, _ in answers if a.dropped and a.error in EARLY]
    chosen = rounds[-1].consensus.chosen if rounds else None
    return Outcome(
        solved=bool(chosen and chosen.score is not None and chosen.score >= target), blind=blind, wall_s=wall_s,
        model_s=sum(spent for *_, spent in answers), members=len(answers), dropped=len(early),
        saved_s=sum(max(0.0, alone.get(a.member.model, 0.0) - ran) for a, ran in early),
        fanout_wall_s=sum(r.fanout.wall_s for r in rounds),
        serial_s=sum(ran if a.dropped and a.error in EARLY else alone.get(a.member.model, spent)
                     for a, ran, spent in answers),
        tier=str(rounds[0].fanout.tier) if rounds else "")  # fmt: skip


def best_single(totals: Sequence[ArmTotals]) -> ArmTotals | None:
    """The single model that solved most, the cheaper one on a tie."""
    singles = [t for t in totals if not t.ensemble]
    return max(singles, key=lambda t: (t.solved, -t.model_s)) if singles else None


def verdict(totals: Sequence[ArmTotals]) -> list[str]:
    """Whether the adaptive ensemble beats the best single model (the most solved), the most efficient
    single model where that is another, and the full ensemble on solved per model-minute, and on
    solved, in so many words."""
    by_arm = {t.arm: t for t in totals}
    adaptive, lines = by_arm.get(ADAPTIVE), []
    if adaptive is None:
        return lines
    singles = [t for t in totals if not t.ensemble]
    thrifty = max(singles, key=lambda t: t.solved_per_model_minute) if singles else None
    others = [o for o in (best_single(totals), thrifty, by_arm.get(FULL)) if o is not None]
    for other in {o.arm: o for o in others}.values():
        a, o = adaptive.solved_per_model_minute, other.solved_per_model_minute
        word = "beats" if a > o else "ties with" if a == o else "does not beat"
        lines.append(f"The adaptive ensemble {word} {other.arm} on solved per model-minute ({a:.2f} against {o:.2f}); "
                     f"it solved {adaptive.solved}/{adaptive.problems} against {other.solved}/{other.problems}.")
    return lines


def table(totals: Sequence[ArmTotals], title: str) -> Table:
    best = best_single(totals)
    t = Table(title=title, caption="* the best single model.  solved: picked by the tests; blind: picked by agreement "
                                   "alone; serial: the members' work one after another; stops: early stops (members "
                                   "dropped), saved: their model-seconds")
    for col in ("arm", "solved", "blind", "wall", "model time", "solved/model-min", "members", "fan-out", "serial",
                "stops", "saved"):
        t.add_column(col, no_wrap=col == "arm")
    for r in totals:
        ens = r.ensemble
        blind = f"{r.blind}/{r.problems}" if ens else "-"
        t.add_row(r.arm + (" *" if r is best else ""), f"{r.solved}/{r.problems}", blind, f"{r.wall_s:.0f} s",
                  f"{r.model_s:.0f} s", f"{r.solved_per_model_minute:.2f}", str(r.members),
                  f"{r.fanout_wall_s:.0f} s" if ens else "-", f"{r.serial_s:.0f} s" if ens else "-",
                  f"{r.early_stops} ({r.dropped})" if ens else "-", f"{r.saved_s:.0f} s" if ens else "-")
    return t


class Paced:
    """A cached answer takes its recorded time again, so that concurrent replays overlap as they did live."""

    def __init__(self, inner: Any, cache: BenchCache) -> None:
        self.inner = inner
        self.cache = cache

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        cached = self.cache.answer(request)
        if cached is not None:
            await asyncio.sleep(cached.total_s)
        return await self.inner.generate(request, on_text)


class ProgressFile:
    """Finished problems, one JSON line each, for a resumed run (lines of another fleet are ignored)."""

    def __init__(self, path: Path, fleet: Sequence[str]) -> None:
        self.path = path
        self.fleet = list(fleet)

    def done(self) -> dict[str, dict[str, Outcome]]:
        found: dict[str, dict[str, Outcome]] = {}
        if not self.path.exists():
            return found
        for line in self.path.read_text().splitlines():
            try:
                row = json.loads(line)
                if row["fleet"] == self.fleet:
                    found[row["task"]] = {arm: Outcome(**o) for arm, o in row["arms"].items()}
            except (ValueError, KeyError, TypeError):
                continue  # a line cut off by an interruption
        return found

    def add(self, task: str, outcomes: dict[str, Outcome]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        row = {"task": task, "fleet": self.fleet, "arms": {arm: asdict(o) for arm, o in outcomes.items()}}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


Progress = Callable[[int, TaskSpec, dict[str, Outcome], bool], None]


class EnsembleBench:
    def __init__(self, config: OptimizationConfig, inventory: Inventory, paths: Paths, cache_path: Path,
                 progress_path: Path) -> None:
        self.config = config
        self.inventory = inventory
        self.paths = paths
        self.cache_path = cache_path
        self.progress_path = progress_path

    async def run(self, tasks: Sequence[TaskSpec], progress: Progress,
                  warn: Callable[[str], None]) -> tuple[list[str], dict[str, ArmTotals]]:
        db = self.cache_path.with_name(f"ensemble-runs-{tasks[0].id}-{tasks[-1].id}.db")
        async with loop_session(self.config, self.inventory, self.paths, db=db, warn=warn) as sup:
            with shared_cache(sup, self.cache_path) as cache:
                fleet = sorted(sup.available or (), key=lambda m: self.inventory.model(m).rank)
                record = ProgressFile(self.progress_path, fleet)
                done = record.done()
                totals = {name: ArmTotals(name) for name in [*(SINGLE + m for m in fleet), FULL, ADAPTIVE]}
                for number, task in enumerate(tasks, 1):
                    outcomes = done.get(task.id)
                    if outcomes is None:
                        outcomes = await self.problem(sup, cache, task, fleet)
                        record.add(task.id, outcomes)
                    for name, outcome in outcomes.items():
                        totals[name].add(task.id, outcome)
                    progress(number, task, outcomes, task.id in done)
        return fleet, totals

    async def problem(self, sup: Supervisor, cache: BenchCache, task: TaskSpec,
                      fleet: Sequence[str]) -> dict[str, Outcome]:
        target = float(task.target_score if task.target_score is not None else self.config.target_score)
        out: dict[str, Outcome] = {}
        for model in fleet:
            run_id = f"bench-ensemble-{uuid.uuid4().hex[:12]}"
            async with sup.attempts.task_run(task, run_id):
                attempt = await judged_sample(sup, task, self.inventory.model(model), 0, run_id)
            out[SINGLE + model] = single_outcome(attempt, target)
            sup.attempts.retire(run_id, solved=out[SINGLE + model].solved)
        alone = {m: out[SINGLE + m].model_s for m in fleet}
        full = self._ensemble(sup, cache, early_stop=False)
        out[FULL] = await self._arm(sup, full, task, Tier.EXPERT, fleet, alone, target)
        adaptive = self._ensemble(sup, cache, early_stop=True)
        tier = classify(task.prompt, task=task).tier
        out[ADAPTIVE] = await self._arm(sup, adaptive, task, tier, None, alone, target)
        return out

    def _ensemble(self, sup: Supervisor, cache: BenchCache, *, early_stop: bool) -> Ensemble:
        return Ensemble(self.config, self.inventory, Paced(sup.generator, cache), sorted(sup.available or ()),
                        attempts=sup.attempts, early_stop=early_stop,  # type: ignore[arg-type]
                        probe=BehaviourRunner(self.paths.workspaces_dir / "ensemble-probes", sup.attempts.level))

    async def _arm(self, sup: Supervisor, ens: Ensemble, task: TaskSpec, tier: Tier, models: Sequence[str] | None,
                   alone: dict[str, float], target: float) -> Outcome:
        run_id = f"bench-ensemble-{uuid.uuid4().hex[:12]}"
        clock = asyncio.get_running_loop().time
        started = clock()
        async with sup.attempts.task_run(task, run_id):
            rounds = await ens.judged_rounds(task, run_id, tier, models=models)
        wall = clock() - started
        outcome = ensemble_outcome(rounds, alone, target, wall, await blind_pick(task, rounds, ens.probe, target))
        sup.attempts.retire(run_id, solved=outcome.solved)
        return outcome


async def blind_pick(task: TaskSpec, rounds: Sequence[Round], probe: BehaviourRunner | None, target: float) -> bool:
    """Whether the answer the ensemble would pick without the tests (by agreement) passes them."""
    candidates = rounds[-1].candidates if rounds else ()
    picked = (await agree(task.prompt, [c.answer for c in candidates], probe)).chosen
    judged = next((c for c in candidates if picked is not None and c.answer is picked.answer), None)
    return bool(judged and judged.score is not None and judged.score >= target)
