"""A live view of the loop: one status line, and a line per finished iteration."""

from __future__ import annotations

from rich.console import Console
from rich.status import Status

from kisystem.loop.supervisor import LoopEvent

PHASE_OF = {"generate": "GENERATE", "build": "BUILD", "test": "TEST", "profile": "PROFILE"}


class LiveView:
    """Feeds on LoopEvents; prints to stderr so stdout stays clean for --json."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status: Status | None = None
        self._announced: set[str] = set()  # hot domains are said once, not per task

    def __enter__(self) -> "LiveView":
        self.status = self.console.status("starting the model servers and loading the models ...")
        self.status.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.status:
            self.status.stop()

    def __call__(self, event: LoopEvent) -> None:
        where = f"[bold]{event.task}[/bold] iter {event.iteration} · {event.model}"
        if event.kind in PHASE_OF and self.status:
            self.status.update(f"{where} · {PHASE_OF[event.kind]} ...")
        elif event.kind == "score":
            error = event.data.get("error")
            note = f" ({error})" if error else ""
            self.console.print(f"{where} · score {event.data['score']:.0f}{note}")
        elif event.kind == "escalate":
            self.console.print(f"[yellow]{event.task}: escalating {event.data['previous']} -> {event.model}[/yellow]")
        elif event.kind == "bias":
            self.console.print(f"{event.task}: {event.data['policy']} routing starts on {event.model} "
                               f"instead of {event.data['replaces']}")
        elif event.kind == "priority" and event.data["domain"] not in self._announced:
            self._announced.add(event.data["domain"])
            self.console.print(f"{event.data['domain']} is among the 3 domains the learning record ranks most in "
                               f"need of work (low success, slow or stale): the queue runs their tasks first")
        elif event.kind == "skip":
            self.console.print(f"[yellow]{event.task}: skipping {event.model}: {event.data['reason']}[/yellow]")
        elif event.kind == "exit":
            colour = "green" if event.data["outcome"] == "success" else "red"
            self.console.print(f"[{colour}]{event.task}: {event.data['outcome']}[/{colour}] · {event.data['reason']}")
