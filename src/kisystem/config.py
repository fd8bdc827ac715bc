"""OptimizationConfig: the loop's tuning knobs, from defaults, a JSON file and KISYSTEM_* variables.

Precedence: environment beats file beats default.  Every key is declared once, as a
dataclass field carrying its :class:`Rule` (type and allowed range); the key table
:data:`KEYS`, loading and validation are all derived from those declarations, so adding
a key is one line.  The file format is the Phase 7 guide's ``optimization_config.json``.
"""

from __future__ import annotations

import difflib
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from kisystem.errors import ConfigError
from kisystem.paths import RESERVED_ENV, Paths
from kisystem.sandbox.levels import SandboxLevel

ENV_PREFIX = "KISYSTEM_"
DEFAULT_FILENAME = "optimization_config.json"
SUM_TOLERANCE = 1e-6
MODEL_PROFILES = ("embedded", "ollama")
SANDBOX_LEVELS = tuple(str(level) for level in SandboxLevel)  # best first
ROUTING_POLICIES = ("spec", "thompson")
ENSEMBLE_TIERS = ("simple", "medium", "complex", "expert")  # kisystem.ensemble.members.Tier
ENSEMBLE_IN_LOOP = ("off", "after_exhausted", "complex")

_KIND_NAMES = {int: "int", float: "float", bool: "bool", str: "string"}
_ARTICLES = {int: "an", float: "a", bool: "a", str: "a"}
_ENV_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


@dataclass(frozen=True)
class Rule:
    """The type and allowed values of one configuration key."""

    kind: type
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] = ()
    nullable: bool = False

    def describe(self) -> str:
        if self.choices:
            text = " | ".join(json.dumps(c) for c in self.choices)
        elif self.lo is not None:
            text = f"{_KIND_NAMES[self.kind]} {_num(self.lo)}..{_num(self.hi)}"
        else:
            text = _KIND_NAMES[self.kind]
        return f"{text} | null" if self.nullable else text

    def problem(self, value: Any) -> str | None:
        """Why ``value`` breaks this rule (without the key), or None when it is fine."""
        if value is None and self.nullable:
            return None
        if not self._type_ok(value):
            what = f"{_ARTICLES[self.kind]} {_KIND_NAMES[self.kind]}"
            return f"{_show(value)} is not {what} (allowed: {self.describe()})"
        if self.choices and value not in self.choices:
            return f"{_show(value)} is not an allowed value (allowed: {self.describe()})"
        if self.kind is str and not value:
            return f"empty string is not allowed (allowed: {self.describe()})"
        if self.lo is not None and not self.lo <= value <= self.hi:
            return f"{_show(value)} is out of range (allowed: {self.describe()})"
        return None

    def coerce(self, value: Any) -> Any:
        """A valid value in its canonical type (JSON ``5`` for a float key becomes ``5.0``)."""
        return float(value) if self.kind is float and value is not None else value

    def _type_ok(self, value: Any) -> bool:
        if isinstance(value, bool):  # bool is an int subclass: `true` is no int
            return self.kind is bool
        if self.kind is float:
            return isinstance(value, (int, float)) and math.isfinite(value)
        return isinstance(value, self.kind)


def _num(x: float | None) -> str:
    return str(int(x)) if x is not None and float(x).is_integer() else str(x)


def _show(value: Any) -> str:
    text = json.dumps(value, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class _Section:
    """Base of the nested objects; weights sections set ``sums_to_one``."""

    sums_to_one: ClassVar[bool] = False


def _key(default: Any, rule: Rule) -> Any:
    return field(default=default, metadata={"rule": rule})


def _int(default: int, lo: int, hi: int) -> Any:
    return _key(default, Rule(int, lo, hi))


def _float(default: float, lo: float = 0.0, hi: float = 1.0) -> Any:
    return _key(default, Rule(float, lo, hi))


def _bool(default: bool) -> Any:
    return _key(default, Rule(bool))


def _section(cls: type[_Section]) -> Any:
    return field(default_factory=cls, metadata={"section": cls})


@dataclass(frozen=True)
class MetaSupervisorWeights(_Section):
    """Weights of the priority formula P(d); they must sum to 1."""

    sums_to_one: ClassVar[bool] = True
    failure_weight: float = _float(0.5)
    time_weight: float = _float(0.2)
    count_weight: float = _float(0.2)
    recency_weight: float = _float(0.1)


@dataclass(frozen=True)
class HybridDecisionWeights(_Section):
    """Weights of the hybrid model decision; they must sum to 1."""

    sums_to_one: ClassVar[bool] = True
    meta_bias: float = _float(0.40)
    complexity: float = _float(0.30)
    failure_state: float = _float(0.30)


@dataclass(frozen=True)
class TwoTierProfiling(_Section):
    score_change_threshold: float = _float(5.0, 0.0, 100.0)
    max_tier0_streak: int = _int(5, 1, 100)


@dataclass(frozen=True)
class Timeouts(_Section):
    """Phase timeouts in seconds."""

    build: int = _int(300, 1, 7200)
    test: int = _int(120, 1, 7200)
    profile: int = _int(900, 1, 14400)


@dataclass(frozen=True)
class FeedbackSettings(_Section):
    """Pattern detection of the feedback loop (seed C: frequency >= 3, confidence >= 0.6,
    a 7-day window); the quality and performance levels below which scores count as low."""

    pattern_min_frequency: int = _int(3, 1, 1000)
    pattern_min_confidence: float = _float(0.6)
    pattern_lookback_days: int = _int(7, 1, 365)
    quality_threshold: float = _float(0.8)
    performance_threshold: float = _float(0.5)


@dataclass(frozen=True)
class HealthSettings(_Section):
    """The optimization engine: the health score's window and response-time SLA, its trend,
    and the opportunity triggers (kisystem optimize; see kisystem.improve.health and
    kisystem.improve.opportunities)."""

    lookback_days: int = _int(7, 1, 365)
    sla_fraction: float = _float(0.5, 0.05, 1.0)  # SLA = a model's generation timeout x this
    unmeasured_quality: float = _float(0.8)  # code quality of a model without quality_score feedback
    trend_points: float = _float(5.0, 0.0, 100.0)  # health change that makes a trend
    trend_history: int = _int(5, 1, 100)  # earlier health scores the newest is compared with
    min_samples: int = _int(3, 1, 1000)  # runs / generations / reviews before a trigger may fire
    decline_points: float = _float(5.0, 0.0, 100.0)  # success-rate drop week over week, in points
    smell_share: float = _float(0.5)  # share of reviewed answers with findings for a code smell
    security_min: float = _float(0.75)  # a guardian security score below this is a vulnerability
    gap_share: float = _float(0.5)  # share of a domain's runs ending exhausted for a capability gap
    memory_mb: int = _int(500, 1, 1_000_000)
    cpu_percent: float = _float(80.0, 1.0, 10_000.0)


STRATEGIES = ("auto", "conservative", "aggressive", "minimal", "comprehensive")  # kisystem.improve.plans.Strategy


@dataclass(frozen=True)
class JobSettings(_Section):
    """The built-in scheduled jobs (kisystem schedule; see kisystem.schedule.jobs).  Budgets are per
    domain and per model over ``budget_window_days``; 0 means no budget."""

    # token_budget (monthly): the window, budgets, and when it proposes a larger max_tokens / num_ctx
    budget_window_days: int = _int(30, 1, 366)
    domain_token_budget: int = _int(0, 0, 10**12)
    domain_model_seconds_budget: float = _float(0.0, 0.0, 1e9)
    model_token_budget: int = _int(0, 0, 10**12)
    model_seconds_budget: float = _float(0.0, 0.0, 1e9)
    truncation_share: float = _float(0.1)  # share of a model's answers cut at max_tokens
    context_share: float = _float(0.85, 0.1, 1.0)  # a prompt this share of the context is near it
    near_context_share: float = _float(0.1)  # share of a model's prompts near its context (or trimmed)
    # formula_tuning (quarterly): the history it fits, the least it fits on, and the profiling replay's bar
    formula_history_days: int = _int(90, 1, 3650)
    formula_min_runs: int = _int(30, 2, 1_000_000)
    profile_stale_points: float = _float(10.0, 0.0, 100.0)  # a profile this many points old is stale
    # health_profiling (bi-weekly): the smoke set per reachable model
    smoke_problems: int = _int(3, 1, 3)
    health_start_embedded: bool = _bool(False)  # start the embedded servers for the smoke set (else: skipped)
    # security_scan (daily): answers scanned per run and how far back; pip-audit of kisystem's own dependencies
    security_window_days: int = _int(30, 1, 3650)
    security_max_answers: int = _int(200, 1, 100_000)
    pip_audit: bool = _bool(True)
    pip_audit_timeout_s: int = _int(180, 5, 3600)
    # improvement_proposals (continuous): the strategy, and how long an identical plan is not proposed again
    improvement_strategy: str = _key("auto", Rule(str, choices=STRATEGIES))
    proposal_cooldown_hours: float = _float(24.0, 0.0, 8760.0)


@dataclass(frozen=True)
class EnsembleSettings(_Section):
    """The adaptive ensemble (kisystem ensemble; see kisystem.ensemble and DESIGN decision 9).  A tier asks
    for ``<tier>_members`` generations, the seed's count in a 12-model fleet: a fleet of F models gives the
    tier ceil(members x F / 12) of its fastest models (at least one; expert: all 12 of 12), each asked up
    to ``max_samples_per_model`` times until the count is reached (kisystem.ensemble.tiers)."""

    # Generations per tier (the seed's 2-3 / 4-6 / 8 / 10-12 of 12) and the tier timeouts (its recommended ones)
    simple_members: int = _int(3, 1, 64)
    medium_members: int = _int(5, 1, 64)
    complex_members: int = _int(8, 1, 64)
    expert_members: int = _int(12, 1, 64)
    simple_timeout_s: int = _int(30, 1, 3600)
    medium_timeout_s: int = _int(45, 1, 3600)
    complex_timeout_s: int = _int(90, 1, 3600)
    expert_timeout_s: int = _int(120, 1, 3600)
    # Samples of one model: the first greedy (unless off), the others at sample_temperature
    max_samples_per_model: int = _int(3, 1, 16)
    sample_temperature: float = _float(0.8, 0.01, 2.0)
    greedy_first_sample: bool = _bool(True)
    # Generations at once per backend endpoint (the seed's "GPU semaphore"), and the parallel slots of each
    # embedded llama.cpp server (0: as many as max_concurrent_per_endpoint; each slot gets the full context)
    max_concurrent_per_endpoint: int = _int(2, 1, 64)
    server_slots: int = _int(0, 0, 64)
    # The query cache in the learning database (kisystem ensemble ask --no-cache skips it)
    cache: bool = _bool(True)
    cache_max_entries: int = _int(1000, 1, 10_000_000)
    # Early stop: a question is settled once this share of the tier's members (at least two) gave the same
    # answer (0: wait for every member); a task once one candidate passes every test.  The fallback (no valid
    # answer: the tier below) asks for this share of the first try's answer budget.
    quorum_share: float = _float(0.5)
    fallback_max_tokens_share: float = _float(0.5, 0.1, 1.0)
    # The answer budget of `kisystem ensemble ask` (0: each model's own max_tokens, else the loop's 400).
    ask_max_tokens: int = _int(0, 0, 32768)
    # In the loop (kisystem.ensemble.loop): "off"; "after_exhausted": one ensemble turn when the chain's last
    # model hit its stop-loss, instead of ending exhausted; "complex": tasks classified at least in_loop_tier
    # start with an ensemble turn.  The turn asks the task's tier, at least in_loop_tier.  Off by default: a
    # turn costs a fan-out over the fleet on every task it applies to.
    in_loop: str = _key("off", Rule(str, choices=ENSEMBLE_IN_LOOP))
    in_loop_tier: str = _key("complex", Rule(str, choices=ENSEMBLE_TIERS))

    @property
    def llama_slots(self) -> int:
        """The parallel slots each embedded llama.cpp server is started with."""
        return self.server_slots or self.max_concurrent_per_endpoint


@dataclass(frozen=True)
class OptimizationConfig:
    max_optimization_iterations: int = _int(10, 1, 50)
    target_score: int = _int(80, 0, 100)
    retry_build: int = _int(2, 0, 5)
    retry_test: int = _int(1, 0, 5)
    retry_profile: int = _int(1, 0, 5)
    stoploss_per_model: int = _int(2, 1, 5)
    max_concurrent_builds: int = _int(3, 1, 8)
    # Generations by this machine's llama.cpp servers at once, across processes; 0 = from the core count.
    max_concurrent_generations: int = _int(0, 0, 64)
    enable_meta_supervisor: bool = _bool(True)
    enable_two_tier_profiling: bool = _bool(True)
    enable_async_io: bool = _bool(True)
    meta_supervisor_weights: MetaSupervisorWeights = _section(MetaSupervisorWeights)
    hybrid_decision_weights: HybridDecisionWeights = _section(HybridDecisionWeights)
    two_tier_profiling: TwoTierProfiling = _section(TwoTierProfiling)
    timeouts: Timeouts = _section(Timeouts)
    # kisystem's own: which built-in model inventory to use, or a user TOML replacing it.
    model_profile: str = _key("embedded", Rule(str, choices=MODEL_PROFILES))
    inventory_file: str | None = _key(None, Rule(str, nullable=True))
    # How a task's start model is chosen: the seeds' meta bias + hybrid floor, or discounted Thompson sampling.
    routing_policy: str = _key("spec", Rule(str, choices=ROUTING_POLICIES))
    # The sandbox: refuse to run generated code below this level; which workspaces outlive their run.
    sandbox_min_level: str = _key("none", Rule(str, choices=SANDBOX_LEVELS))
    keep_workspaces: bool = _bool(False)
    keep_failed_workspaces: int = _int(5, 0, 1000)
    # Sampling of a model's later tries: without feedback (a fresh sample) and with it (a repair).
    sample_temperature: float = _float(0.8, 0.0, 2.0)
    repair_temperature: float = _float(0.8, 0.0, 2.0)
    # A wrong answer (LOGIC) gets a fresh sample, not a repair prompt, unless this is on.
    repair_logic_errors: bool = _bool(False)
    # Seconds a backend may stay silent before its first token, on top of the time it needs to
    # read the prompt (25 tokens/s); then the call fails, not retried.
    first_token_timeout_s: int = _int(30, 1, 3600)
    # A backend failing this many calls in a row (down, hanging, 5xx) is skipped for
    # backend_cooldown_s seconds (0: never); tasks move on along their chains meanwhile.
    backend_failures_before_cooldown: int = _int(2, 1, 20)
    backend_cooldown_s: int = _int(60, 0, 3600)
    # Static analysis of every answer's code (ruff and bandit, compiler warnings), recorded as
    # guardian feedback (quality_score, security).
    static_analysis: bool = _bool(True)
    # "Lessons from earlier runs" (improve/ learnings for the model and domain) in fix and
    # optimize prompts.  On: on HumanEval 0:80 the loop solved 77 with them against 76 without,
    # in 99 attempts against 101 and 2631 against 2700 model-seconds (README, "Lessons").
    lessons_in_prompts: bool = _bool(True)
    # `kisystem queue run` also runs the due `continuous` scheduled jobs (improvement proposals)
    # between tasks; off by default: `kisystem schedule run` is the scheduler's own process.
    enable_scheduled_jobs: bool = _bool(False)
    # The feedback loop's pattern thresholds (kisystem feedback patterns / learnings).
    feedback: FeedbackSettings = _section(FeedbackSettings)
    # The optimization engine's health score and opportunity triggers (kisystem optimize).
    health: HealthSettings = _section(HealthSettings)
    # The built-in scheduled jobs: budgets, thresholds, smoke set, strategy (kisystem schedule).
    jobs: JobSettings = _section(JobSettings)
    # The adaptive ensemble: tier sizes and timeouts, samples, per-endpoint concurrency, the query cache.
    ensemble: EnsembleSettings = _section(EnsembleSettings)

    @classmethod
    def load(cls, path: str | Path) -> OptimizationConfig:
        """The config in a JSON file (missing keys keep defaults); no environment overrides."""
        return load_config(Path(path), env={}).config

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OptimizationConfig:
        """Validate a nested mapping shaped like the JSON file; raises ConfigError."""
        draft = _Draft.defaults()
        draft.apply_nested(data, "dict")
        return draft.finish().config

    def to_dict(self) -> dict[str, Any]:
        """The nested, JSON-ready form (the file format)."""
        return asdict(self)


def _table() -> tuple[dict[str, Rule], dict[str, type[_Section]]]:
    keys: dict[str, Rule] = {}
    sections: dict[str, type[_Section]] = {}
    for f in fields(OptimizationConfig):
        if "section" in f.metadata:
            sections[f.name] = f.metadata["section"]
            keys.update({f"{f.name}.{s.name}": s.metadata["rule"] for s in fields(f.metadata["section"])})
        else:
            keys[f.name] = f.metadata["rule"]
    return keys, sections


KEYS, SECTIONS = _table()
"""KEYS: every dotted key -> its Rule, in file order.  SECTIONS: nested object name -> class."""


def env_name(key: str) -> str:
    """The environment variable that overrides a dotted key: timeouts.build -> KISYSTEM_TIMEOUTS__BUILD."""
    return ENV_PREFIX + key.replace(".", "__").upper()


ENV_KEYS = {env_name(k): k for k in KEYS}
TOP_LEVEL = tuple(f.name for f in fields(OptimizationConfig))


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and, per dotted key, "default", "file:PATH" or "env:NAME"."""

    config: OptimizationConfig
    sources: dict[str, str]
    path: Path | None = None


def load_config(path: Path | None, env: Mapping[str, str] = os.environ) -> LoadedConfig:
    """Defaults, then the JSON file at ``path`` (if given), then KISYSTEM_* overrides from ``env``.

    Raises ConfigError listing every problem found, one line each.
    """
    draft = _Draft.defaults()
    if path is not None:
        data = _read_json(path, draft.problems)
        if data is not None:
            draft.apply_nested(data, f"file:{path}")
    draft.apply_env(env)
    return draft.finish(path)


def config_path_for(paths: Paths) -> Path | None:
    """The file a command should load: --config, else HOME/optimization_config.json if it exists."""
    if paths.config is not None:
        return paths.config
    candidate = paths.home / DEFAULT_FILENAME
    return candidate if candidate.is_file() else None


def default_json() -> str:
    """The default config as the file ``kisystem config init`` writes."""
    return json.dumps(OptimizationConfig().to_dict(), indent=2) + "\n"


def flatten(nested: Mapping[str, Any]) -> dict[str, Any]:
    """A nested config dict as {dotted key: value}."""
    flat: dict[str, Any] = {}
    for name, value in nested.items():
        if name in SECTIONS:
            flat.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            flat[name] = value
    return flat


@dataclass
class _Draft:
    """Values being layered; invalid ones are recorded as problems and not applied."""

    values: dict[str, Any]
    sources: dict[str, str]
    problems: list[str] = field(default_factory=list)
    bad: set[str] = field(default_factory=set)

    @classmethod
    def defaults(cls) -> _Draft:
        values = flatten(OptimizationConfig().to_dict())
        return cls(values=values, sources=dict.fromkeys(values, "default"))

    def put(self, key: str, value: Any, source: str, suffix: str = "") -> None:
        problem = KEYS[key].problem(value)
        if problem:
            self.problems.append(f"{key}: {problem}{suffix}")
            self.bad.add(key)
        else:
            self.values[key] = KEYS[key].coerce(value)
            self.sources[key] = source

    def apply_nested(self, data: Mapping[str, Any], source: str) -> None:
        for key, value in _leaves(data, self.problems):
            self.put(key, value, source)

    def apply_env(self, env: Mapping[str, str]) -> None:
        for name in sorted(n for n in env if n.startswith(ENV_PREFIX) and n not in RESERVED_ENV):
            key = ENV_KEYS.get(name)
            if key is None:
                self.problems.append(f"{name}: unknown KISYSTEM_ variable{_suggest(name, ENV_KEYS, ENV_PREFIX)}")
            else:
                self.put(key, _parse_env(env[name], KEYS[key]), f"env:{name}", f" [from {name}]")

    def finish(self, path: Path | None = None) -> LoadedConfig:
        self._check_sums()
        if self.problems:
            where = f" in {path}" if path else ""
            raise ConfigError(f"invalid configuration{where}", problems=list(self.problems))
        return LoadedConfig(_build(self.values), dict(self.sources), path)

    def _check_sums(self) -> None:
        for name, cls in SECTIONS.items():
            keys = [f"{name}.{f.name}" for f in fields(cls)]
            if not cls.sums_to_one or self.bad.intersection(keys):
                continue
            total = sum(self.values[k] for k in keys)
            if abs(total - 1.0) > SUM_TOLERANCE:
                terms = " + ".join(f.name for f in fields(cls))
                self.problems.append(f"{name}: {terms} = {total:.6g}, must sum to 1 (within {SUM_TOLERANCE:g})")


def _leaves(data: Mapping[str, Any], problems: list[str]) -> Iterator[tuple[str, Any]]:
    """(dotted key, value) for each known leaf; unknown keys and non-object sections become problems."""
    for name, value in data.items():
        if name in SECTIONS:
            yield from _section_leaves(name, value, problems)
        elif name in KEYS:
            yield name, value
        else:
            problems.append(f"{name}: unknown key{_suggest(name, TOP_LEVEL)}")


def _section_leaves(name: str, value: Any, problems: list[str]) -> Iterator[tuple[str, Any]]:
    if not isinstance(value, dict):
        allowed = ", ".join(f.name for f in fields(SECTIONS[name]))
        problems.append(f"{name}: {_show(value)} is not an object (allowed: object with keys {allowed})")
        return
    for sub, leaf in value.items():
        key = f"{name}.{sub}"
        if key in KEYS:
            yield key, leaf
        else:
            problems.append(f"{key}: unknown key{_suggest(key, KEYS, name + '.')}")


def _suggest(name: str, known: Iterable[str], prefix: str = "") -> str:
    """A did-you-mean hint; the shared prefix is left out of the comparison so it cannot make everything look close."""
    tails = [k.removeprefix(prefix) for k in known if k.startswith(prefix)]
    close = difflib.get_close_matches(name.removeprefix(prefix), tails, n=1)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def _parse_env(text: str, rule: Rule) -> Any:
    """The typed value of an environment string; the raw string when it does not parse (the rule reports it)."""
    s = text.strip()
    if rule.kind is bool:
        return _ENV_BOOLS.get(s.lower(), text)
    if rule.kind in (int, float):
        try:
            return rule.kind(s)
        except ValueError:
            return text
    return None if rule.nullable and s == "" else text


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _read_json(path: Path, problems: list[str]) -> Mapping[str, Any] | None:
    """The file's top-level object, or None after recording one problem line."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)
    except FileNotFoundError:
        problems.append(f"{path}: file not found")
        return None
    except OSError as err:
        problems.append(f"{path}: cannot read file ({err.strerror or err})")
        return None
    except UnicodeDecodeError as err:
        problems.append(f"{path}: not UTF-8 text (byte {err.start})")
        return None
    except json.JSONDecodeError as err:
        problems.append(f"{path}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}")
        return None
    except _DuplicateKey as err:
        problems.append(f"{path}: duplicate key {json.dumps(str(err))}")
        return None
    if not isinstance(data, dict):
        problems.append(f"{path}: top level must be a JSON object, got {_show(data)}")
        return None
    return data


def _build(values: Mapping[str, Any]) -> OptimizationConfig:
    kwargs: dict[str, Any] = {}
    for f in fields(OptimizationConfig):
        cls = f.metadata.get("section")
        if cls is None:
            kwargs[f.name] = values[f.name]
        else:
            kwargs[f.name] = cls(**{s.name: values[f"{f.name}.{s.name}"] for s in fields(cls)})
    return OptimizationConfig(**kwargs)
