"""A live view of the loop: a status line, a line per finished iteration, and the models loading.

The iteration line (:func:`iteration_line`, fed by :class:`IterationLines`) is the one
format ``run``, ``demo`` and ``queue run`` share; it is printed whether or not stderr is
a terminal, so a log shows every iteration too.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from kisystem.errors import UsageError
from kisystem.loop.supervisor import LoopEvent
from kisystem.models import catalog
from kisystem.models.inventory import Inventory

PHASES = ("generate", "build", "test", "profile")
STARTING = "starting: the sandbox, the learning database and the model backends ..."
FLEET_READY = "models ready ..."


def iteration_line(task: str, iteration: int, model: str, phase: str, score: float | None,
                   error: str | None = None) -> str:  # fmt: skip
    """One finished iteration: ``HumanEval_163  it 2  qwen2.5-coder-0.5b  test  score 0  LOGIC``.

    ``phase`` is the last phase the iteration reached; ``score`` None means no answer came.
    """
    parts = [task, f"it {iteration}", model, phase, "no answer" if score is None else f"score {score:.0f}"]
    return "  ".join([*parts, error] if error else parts)


class IterationLines:
    """One line per finished iteration, from the LoopEvents of any number of interleaved runs.

    An iteration ends with its ``score`` event (a failed model call sends one with no score and
    the reason); a skipped model's ``skip`` event and an interrupted run's ``exit`` say why themselves.
    """

    def __init__(self) -> None:
        self._phase: dict[str, str] = {}  # run id -> the last phase its iteration in progress reached

    def feed(self, event: LoopEvent) -> list[str]:
        if event.kind in PHASES:
            self._phase[event.run_id] = event.kind
        elif event.kind == "score":
            phase = self._phase.pop(event.run_id, "generate")
            return [iteration_line(event.task, event.iteration, event.model, phase, event.data.get("score"),
                                   event.data.get("error"))]  # fmt: skip
        elif event.kind in ("skip", "exit"):
            self._phase.pop(event.run_id, None)
        return []


def priority_note(domain: str, top: int = 3) -> str:
    """What "priority domain" means (routing.meta's P(d)) and what follows from it."""
    return (f"{domain} is a priority domain: top {top} by P(d), where the learning record expects more runs to gain "
            f"most (failing, quick or often-run domains, or a recent error: `kisystem meta explain {domain}`); "
            f"the queue runs its tasks before those of lower-priority domains with a similar ETA")


class PriorityNotes:
    """The priority note for a task's domain, once per domain (not per task)."""

    def __init__(self) -> None:
        self._said: set[str] = set()

    def feed(self, event: LoopEvent) -> list[str]:
        if event.kind != "priority" or event.data["domain"] in self._said:
            return []
        self._said.add(event.data["domain"])
        return [priority_note(event.data["domain"], event.data.get("top", 3))]


def human_size(size: int) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.0f} MB"


def model_sizes(inventory: Inventory) -> dict[str, int]:
    """Bytes of each embedded model's weights, by inventory name (those the catalog knows)."""
    sizes = {}
    for spec in inventory.models.values():
        if spec.embedded:
            try:
                sizes[spec.name] = catalog.embedded_model(spec.embedded).size
            except UsageError:
                continue
    return sizes


class FleetProgress:
    """The embedded models loading (at start, or again after a server died): on a terminal, a status
    line naming those still loading and the seconds so far; a line when a model is ready, and one
    when it starts loading where no status line shows it."""

    def __init__(self, console: Console, sizes: Mapping[str, int], status: Status | None = None) -> None:
        self.console = console
        self.sizes = sizes
        self.status = status
        self.loading: dict[str, float] = {}  # model -> when it was first reported loading

    def __call__(self, model: str, state: str) -> None:
        now = time.monotonic()
        if state == "ready":
            seconds = now - self.loading.pop(model, now)
            self.console.print(f"{escape(model)} ready after {seconds:.0f} s", highlight=False)
        elif model not in self.loading:
            self.loading[model] = now
            if self.status is None or not self.console.is_terminal:  # no status line shows it
                self.console.print(f"loading {escape(self.label(model))} ...", highlight=False)
        if self.status is not None:
            self.status.update(self.line(now) if self.loading else FLEET_READY)

    def label(self, model: str) -> str:
        return f"{model} ({human_size(self.sizes[model])})" if model in self.sizes else model

    def line(self, now: float) -> str:
        seconds = now - min(self.loading.values())
        return f"loading {escape(', '.join(self.label(m) for m in self.loading))} ... {seconds:.0f} s"


class LiveView:
    """Feeds on LoopEvents; prints to stderr so stdout stays clean for --json."""

    def __init__(self, console: Console, sizes: Mapping[str, int] | None = None) -> None:
        self.console = console
        self.status: Status | None = None
        self.lines = IterationLines()
        self._fleet = FleetProgress(console, sizes or {})
        self.priorities = PriorityNotes()

    def __enter__(self) -> "LiveView":
        self.status = self.console.status(STARTING)
        self.status.start()
        self._fleet.status = self.status
        return self

    def __exit__(self, *exc) -> None:
        if self.status:
            self.status.stop()

    def _waiting(self, event: LoopEvent) -> None:
        """No token yet: the status line says for how long; without a terminal, a line does."""
        text = (f"{event.task}  it {event.iteration}  {event.model}  no token yet after {event.data['seconds']} s "
                "(queued for the model, or it is reading the prompt)")
        if self.console.is_terminal and self.status:
            self.status.update(escape(text) + " ...")
        else:
            self.console.print(text, markup=False, highlight=False)

    def fleet(self, model: str, state: str) -> None:
        """EmbeddedFleet's ``on_progress``: a model is still loading, or ready."""
        self._fleet(model, state)

    def __call__(self, event: LoopEvent) -> None:
        for line in self.lines.feed(event) + self.priorities.feed(event):
            self.console.print(line, markup=False, highlight=False)
        task = escape(event.task)
        if event.kind in PHASES and self.status:
            self.status.update(f"[bold]{task}[/bold] it {event.iteration} · {escape(event.model)} · {event.kind} ...")
        elif event.kind == "escalate":
            self.console.print(f"[yellow]{task}: escalating {event.data['previous']} -> {event.model}[/yellow]")
        elif event.kind == "bias":
            self.console.print(f"{task}: {event.data['policy']} routing starts on {event.model} "
                               f"instead of {event.data['replaces']}")
        elif event.kind == "waiting":
            self._waiting(event)
        elif event.kind == "skip":
            self.console.print(f"[yellow]{task}: skipping {event.model}: {escape(event.data['reason'])}[/yellow]")
        elif event.kind == "exit":
            colour, reason = "green" if event.data["outcome"] == "success" else "red", escape(event.data["reason"])
            self.console.print(f"[{colour}]{task}: {event.data['outcome']}[/{colour}] · {reason}")
