"""Which queued task runs next: PriorityEff = PriorityScore / ETA(model, domain) (DESIGN decision 6).

ETA is learned per (model, domain) from the mean wall time of finished runs in the
learning database, shrunk toward the guide's static table while the evidence is thin::

    eta = (n * mean + K * static) / (n + K),   K = PRIOR_RUNS
    static(model, domain) = base(model) * multiplier(domain) + 30 s

PriorityScore is the task's explicit ``priority``, else 100 * P(domain) from the
meta-supervisor (clamped at 0); a domain without finished runs, or every domain when the
meta-supervisor is disabled, gets the neutral :data:`NEUTRAL_PRIORITY`.

Beyond the seeds: among the tasks whose PriorityEff is within 10 % of the best, one whose
model is already loaded on its backend wins, since loading a model can cost more than the
task.  Ties otherwise go to the task queued first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from kisystem.config import OptimizationConfig
from kisystem.errors import BackendError
from kisystem.models.client import ModelClient
from kisystem.models.inventory import Inventory
from kisystem.routing.meta import MetaSupervisor
from kisystem.store.learning import LearningStore, ModelStats
from kisystem.store.queue import Candidate

MODEL_BASE_S: Mapping[str, float] = {
    "mistral:7b": 30.0,
    "deepseek-coder-v2:16b": 120.0,
    "qwen2.5-coder:32b": 300.0,
    "deepseek-r1:32b": 900.0,
    # the embedded fleet, one answer on 2 cores (../shared/FACTS.md)
    "smollm2-135m": 5.0,
    "qwen2.5-coder-0.5b": 20.0,
    "qwen2.5-coder-1.5b": 45.0,
}
DEFAULT_BASE_S = 180.0
DOMAIN_MULTIPLIERS: Mapping[str, float] = {
    "CUDA/Kernel": 1.5,
    "C++/System": 1.0,
    "Audio/DSP": 1.2,
    "Tests/Docs": 0.8,
}
OVERHEAD_S = 30.0  # build and test
PRIOR_RUNS = 3.0
NEUTRAL_PRIORITY = 50.0
TIE_BAND = 0.10

EtaFn = Callable[[str, str], float]


def static_eta(model: str, domain: str) -> float:
    """The guide's table: base time of the model times the domain's multiplier, plus 30 s."""
    return MODEL_BASE_S.get(model, DEFAULT_BASE_S) * DOMAIN_MULTIPLIERS.get(domain, 1.0) + OVERHEAD_S


@dataclass(frozen=True)
class Eta:
    seconds: float
    runs: int  # finished runs behind the learned part
    source: str  # "static" or "learned"


class EtaEstimator:
    """ETA(model, domain) from finished runs' mean wall time, with the static table as prior."""

    def __init__(self, stats: Iterable[ModelStats] = ()) -> None:
        self._learned = {(s.model, s.domain): (s.runs, s.avg_time_s)
                         for s in stats if s.runs and s.avg_time_s is not None}  # fmt: skip

    @classmethod
    def from_store(cls, store: LearningStore | None) -> EtaEstimator:
        return cls(store.model_stats() if store is not None else ())

    def estimate(self, model: str, domain: str) -> Eta:
        prior = static_eta(model, domain)
        if (model, domain) not in self._learned:
            return Eta(prior, 0, "static")
        n, mean = self._learned[(model, domain)]
        return Eta((n * mean + PRIOR_RUNS * prior) / (n + PRIOR_RUNS), n, "learned")

    def __call__(self, model: str, domain: str) -> float:
        return self.estimate(model, domain).seconds


class PriorityScores:
    """PriorityScore per task: explicit priority, else 100 * P(domain), else neutral."""

    def __init__(self, by_domain: Mapping[str, float] | None = None, neutral: float = NEUTRAL_PRIORITY) -> None:
        self.by_domain = dict(by_domain or {})
        self.neutral = neutral

    @classmethod
    def from_meta(cls, meta: MetaSupervisor) -> PriorityScores:
        if not meta.enabled:
            return cls()
        scores = {i.domain: max(0.0, 100.0 * meta.priority(i.success_rate, i.avg_time, i.run_count, i.recency))
                  for i in meta.domain_inputs()}  # fmt: skip
        return cls(scores)

    def score(self, domain: str, explicit: float | None = None) -> float:
        if explicit is not None:
            return explicit
        return self.by_domain.get(domain, self.neutral)


def start_models(inventory: Inventory, bias: Mapping[str, str] | None = None) -> Callable[[str], str]:
    """The model a domain's tasks will likely start on: the meta bias if in the chain, else the route's start."""

    def model_for(domain: str) -> str:
        if domain not in inventory.routes:
            return ""
        chain = inventory.route(domain).chain
        chosen = (bias or {}).get(domain)
        return chosen if chosen in chain else chain[0]

    return model_for


class Ordering:
    """Ranks queued candidates; cheap and free of I/O, so it can run inside a claim transaction."""

    def __init__(self, eta: EtaFn = static_eta, scores: PriorityScores | None = None,
                 model_for: Callable[[str], str] = lambda domain: "",
                 loaded: Callable[[], Collection[str]] = frozenset, tie_band: float = TIE_BAND) -> None:  # fmt: skip
        self.eta = eta
        self.scores = scores or PriorityScores()
        self.model_for = model_for
        self.loaded = loaded
        self.tie_band = tie_band

    def model(self, c: Candidate) -> str:
        return c.model or self.model_for(c.domain)

    def priority(self, c: Candidate) -> float:
        return self.scores.score(c.domain, c.priority)

    def eff(self, c: Candidate) -> float:
        return self.priority(c) / max(self.eta(self.model(c), c.domain), 1e-9)

    def pick(self, candidates: Sequence[Candidate]) -> Candidate | None:
        """The best PriorityEff; within the tie band a loaded model wins; then the oldest."""
        if not candidates:
            return None
        scored = [(self.eff(c), c) for c in candidates]
        floor = max(e for e, _ in scored) * (1.0 - self.tie_band)
        band = [(e, c) for e, c in scored if e >= floor]
        loaded = self.loaded()
        warm = [(e, c) for e, c in band if self.model(c) in loaded]
        return max(warm or band, key=lambda ec: (ec[0], -ec[1].id))[1]

    def queue_order(self, queued: Sequence[Candidate]) -> list[Candidate]:
        """Every queued task in the order claims would take them now (one candidate per task).

        Tasks of one (domain, model, priority) group share their PriorityEff, so a group,
        once first, stays first until drained: rank the groups' oldest tasks, then drain.
        """
        groups: dict[tuple[str, str | None, float | None], list[Candidate]] = {}
        for c in sorted(queued, key=lambda c: c.id):
            groups.setdefault((c.domain, c.model, c.priority), []).append(c)
        heads = self.ranked([members[0] for members in groups.values()])
        return [c for head in heads for c in groups[(head.domain, head.model, head.priority)]]

    def ranked(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """The order ``pick`` would take them in, given today's loaded models (quadratic; for display)."""
        left, order = list(candidates), []
        while left:
            chosen = self.pick(left)
            assert chosen is not None
            order.append(chosen)
            left.remove(chosen)
        return order


def learned_ordering(store: LearningStore | None, config: OptimizationConfig | None = None,
                     inventory: Inventory | None = None,
                     loaded: Callable[[], Collection[str]] = frozenset) -> Ordering:  # fmt: skip
    """The ordering as of now: ETAs, priorities and start models read from the learning database."""
    meta = MetaSupervisor(store, config)
    model_for = start_models(inventory, meta.recommend_model_bias()) if inventory else (lambda domain: "")
    return Ordering(EtaEstimator.from_store(store), PriorityScores.from_meta(meta), model_for, loaded)


async def probe_loaded(inventory: Inventory, client: ModelClient) -> set[str]:
    """Models loaded right now: Ollama's ``/api/ps``; an embedded llama.cpp server holds its one model.

    Other OpenAI-compatible servers cannot tell, so their models count as not loaded.
    """
    loaded: set[str] = set()
    for endpoint in inventory.endpoints.values():
        names = [m.name for m in inventory.models.values() if m.endpoint == endpoint.name]
        if not names:
            continue
        adapter = client.adapter_for(names[0])
        running = getattr(adapter, "running_models", None)
        if running is None and not any(inventory.models[n].embedded for n in names):
            continue
        try:
            listed = await (running() if running is not None else adapter.list_models())
        except BackendError:
            continue
        loaded |= {n for n in names if _listed(n, listed)}
    return loaded


async def watch_loaded(inventory: Inventory, client: ModelClient, into: set[str], every_s: float = 10.0) -> None:
    """Keep ``into`` equal to the loaded models, probing every ``every_s`` seconds until cancelled."""
    while True:
        found = await probe_loaded(inventory, client)
        into.clear()
        into.update(found)
        await asyncio.sleep(every_s)


def _listed(name: str, listed: Iterable[str]) -> bool:
    """Ollama lists 'phi4:latest' where an inventory may say 'phi4'."""
    full = name if ":" in name else f"{name}:latest"
    return any(item in (name, full) for item in listed)
