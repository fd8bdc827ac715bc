"""A learning database the job tests fill with recorded runs (their events as the loop writes them),
queued tasks and answers, on a clock the test moves."""

from __future__ import annotations

import time
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kisystem.config import JobSettings, OptimizationConfig
from kisystem.improve.feedback import FeedbackLoop
from kisystem.improve.versions import OptimizationStore
from kisystem.loop.taskspec import PhaseSpec, TaskSpec, dump_task
from kisystem.models.inventory import Inventory, parse_inventory
from kisystem.paths import Paths
from kisystem.schedule.tasks import JobContext
from kisystem.store.learning import LearningStore, RunResult
from kisystem.store.queue import QueueStore, StoredAnswer, Submission
from tests.improve.health_support import T0, Clock  # noqa: F401  (T0 is used by the web tests too)

PY = "Python/General"
CPP = "C++/System"

FLEET = f"""
[endpoints.local]
backend = "openai"
base_url = "http://127.0.0.1:9"

[[models]]
name = "small"
rank = 1
timeout_s = 60
endpoint = "local"
context_tokens = 2048

[[models]]
name = "big"
rank = 2
timeout_s = 120
endpoint = "local"
context_tokens = 8192

[routes."{PY}"]
start = "small"
escalation = ["big"]

[routes."{CPP}"]
start = "big"
escalation = []
"""


def fleet() -> Inventory:
    """small (timeout 60 s, context 2048) -> big (120 s, 8192) on Python; big alone on C++."""
    return parse_inventory(tomllib.loads(FLEET), "job test fleet")


@dataclass
class Iter:
    """One iteration of a recorded run: the model's answer, its test, how it scored."""

    model: str
    error: str | None = None  # the error type when the iteration failed (LOGIC, COMPILATION, ...)
    gen_s: float = 10.0
    prompt_tokens: int = 300
    completion_tokens: int = 150
    max_tokens: int = 400
    finish: str = "stop"
    test_s: float = 1.0
    profile: dict[str, Any] | None = None  # a ``profile`` event's payload

    @property
    def score(self) -> float:
        return 0.0 if self.error else 100.0


def py_spec(task_id: str, prompt: str = "Write add(a, b).") -> TaskSpec:
    return TaskSpec(id=task_id, domain=PY, language="python", prompt=prompt, solution_file="solution.py",
                    test=PhaseSpec("true", 5.0))


@dataclass
class Db:
    """A learning database at ``root``/learning.db (the home is ``root``), its stores on one moved clock."""

    root: Path
    config: OptimizationConfig = field(default_factory=OptimizationConfig)
    inventory: Inventory = field(default_factory=fleet)
    clock: Clock = field(default_factory=Clock)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.path = self.root / "learning.db"
        self.store = LearningStore.open(self.path, clock=self.clock)
        self.feedback = FeedbackLoop(self.store, self.config.feedback, clock=self.clock)

    def close(self) -> None:
        self.store.close()

    def jobs(self, **settings: Any) -> None:
        """Change the config's ``jobs`` section."""
        self.config = replace(self.config, jobs=replace(JobSettings(), **settings))

    def ctx(self, time_left_s: float = 600.0) -> JobContext:
        return JobContext(self.config, self.inventory, Paths(self.root, self.path, None), self.store, self.clock,
                          time.monotonic() + time_left_s)

    def versions(self) -> OptimizationStore:
        return OptimizationStore.open(self.path, clock=self.clock)

    def run(self, task: str, iterations: list[Iter], outcome: str = "success", domain: str = PY,
            events: list[tuple[int, str, dict[str, Any]]] = ()) -> str:
        """A finished run: per iteration its ``generate``, ``answer``, ``test``, (``profile``) and ``score``
        events, the clock moving by the generation and test time; ``events`` adds (iteration, kind, payload)."""
        run_id = self.store.start_run(task, domain, iterations[0].model)
        for i, it in enumerate(iterations, 1):
            def emit(kind: str, **data: Any) -> None:
                self.store.append_event(run_id, kind, {"iteration": i, "model": it.model, **data})

            emit("generate", temperature=0.0)
            for at, kind, payload in events:
                if at == i:
                    emit(kind, **payload)
            self.clock.advance(seconds=it.gen_s)
            emit("answer", prompt_tokens=it.prompt_tokens, completion_tokens=it.completion_tokens,
                 max_tokens=it.max_tokens, finish_reason=it.finish, seconds=it.gen_s)
            self.clock.advance(seconds=it.test_s)
            error = {"error_type": it.error, "phase": "TEST", "severity": 2, "recoverable": True} if it.error else None
            emit("test", ok=it.error is None, seconds=it.test_s, attempts=1, error=error)
            if it.profile is not None:
                emit("profile", **it.profile)
            emit("score", score=it.score, error=it.error)
        tried = tuple(dict.fromkeys(it.model for it in iterations))
        self.store.finish_run(run_id, RunResult(
            model=iterations[-1].model, iter=len(iterations), score_final=max(it.score for it in iterations),
            outcome=outcome, tokens_prompt=sum(it.prompt_tokens for it in iterations),  # type: ignore[arg-type]
            tokens_completion=sum(it.completion_tokens for it in iterations), models_tried=tried))
        self.clock.advance(minutes=1)
        return run_id

    def queue(self, spec: TaskSpec, answers: dict[str, tuple[str, str]]) -> int:
        """Queue ``spec`` and store ``answers`` (key -> (model, text)) for it, as the queue's runner does."""
        with QueueStore.open(self.path, clock=lambda: self.clock().timestamp()) as queue:
            (added,) = queue.add([Submission(dump_task(spec), spec.id, spec.domain, f"test:{spec.id}")])
            for key, (model, text) in answers.items():
                queue.save_answer(added.id, key, StoredAnswer(model, text, 100, 50, "stop", 0.5, 3.0))
        return added.id
