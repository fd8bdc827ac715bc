"""``kisystem ray``'s two jobs: start a node that declares its models, and show the cluster.

A node declares each model it serves as the custom resource ``model:<name>`` with one unit
per generation slot (``--serves NAME=SLOTS``), or every model its Ollama lists
(``--ollama URL``, one slot each).  The status reads Ray's own view: live and dead nodes,
each model's slots in use, and, where Ray's dashboard runs, which attempt runs where.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from kisystem.errors import BackendUnreachable, UsageError
from kisystem.executors.ray_executor import MODEL_PREFIX, model_resource, served_models

ATTEMPT_PREFIX = "kisystem:"  # the Ray task names of attempts (see ray_executor.task_name)
RESERVED_ARGS = ("--resources", "--head", "--address")  # kisystem ray node sets these itself
NO_TASKS_NOTE = "which attempt runs where needs Ray's dashboard on the head node (pip install 'ray[default]')"


def parse_serves(values: Iterable[str]) -> dict[str, float]:
    """``NAME[=SLOTS]`` items as {name: slots}; a name may hold ':' (``qwen2.5-coder:32b=2``)."""
    served: dict[str, float] = {}
    for value in values:
        name, _, slots = value.rpartition("=") if "=" in value else (value, "", "1")
        if not name or not name.strip() or "=" in name:
            raise UsageError(f"--serves {value!r}: expected MODEL or MODEL=SLOTS")
        if not slots.isdigit() or int(slots) < 1:
            raise UsageError(f"--serves {value!r}: SLOTS must be a whole number of at least 1")
        served[name.strip()] = float(slots)
    return served


def ollama_models(url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """The models a node's Ollama has (``/api/tags``), one slot each."""
    try:
        response = httpx.get(f"{url.rstrip('/')}/api/tags", timeout=timeout_s)
        response.raise_for_status()
        names = [m["name"] for m in response.json().get("models", [])]
    except (httpx.HTTPError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise BackendUnreachable(f"cannot list the models of Ollama at {url}: {err}") from None
    return dict.fromkeys(names, 1.0)


def node_command(served: dict[str, float], *, address: str | None, gpus: int | None,
                 ray_args: Sequence[str] = ()) -> list[str]:  # fmt: skip
    """The ``ray start`` command of a node serving ``served``: a head node without ``address``."""
    if not served:
        raise UsageError("a node must serve at least one model: --serves MODEL[=SLOTS] or --ollama URL")
    for arg in ray_args:
        if arg.split("=", 1)[0] in RESERVED_ARGS:
            raise UsageError(f"{arg.split('=', 1)[0]} is set by kisystem ray node; declare models with --serves")
    where = ["--address", address] if address else ["--head"]
    resources = {model_resource(name): slots for name, slots in served.items()}
    gpu = ["--num-gpus", str(gpus)] if gpus is not None else []
    return [sys.executable, "-m", "ray.scripts.scripts", "start", *where, "--resources",
            json.dumps(resources, separators=(",", ":")), *gpu, "--disable-usage-stats", *ray_args]


@dataclass(frozen=True)
class NodeStatus:
    node_id: str
    address: str
    alive: bool
    cpus: float
    gpus: float
    slots: dict[str, tuple[float, float]]  # model -> (in use, total)
    running: tuple[str, ...] = field(default_factory=tuple)  # attempts running there: "task · iteration · model"

    def as_dict(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "address": self.address, "alive": self.alive, "cpus": self.cpus,
                "gpus": self.gpus, "models": {m: {"in_use": u, "slots": t} for m, (u, t) in self.slots.items()},
                "running": list(self.running)}  # fmt: skip


def cluster_status(ray: Any) -> tuple[list[NodeStatus], str | None]:
    """Every node Ray knows, with its models' slots; a note when running attempts cannot be listed."""
    available = _available_per_node(ray)
    running, note = _running_attempts()
    nodes = []
    for n in ray.nodes():
        total = n.get("Resources", {})
        free = available.get(n["NodeID"], total if n.get("Alive") else {})
        slots = {m: (max(0.0, s - free.get(model_resource(m), s)), s) for m, s in served_models(total).items()}
        nodes.append(NodeStatus(n["NodeID"], n.get("NodeManagerAddress", "?"), bool(n.get("Alive")),
                                total.get("CPU", 0.0), total.get("GPU", 0.0), slots,
                                tuple(running.get(n["NodeID"], ()))))  # fmt: skip
    return sorted(nodes, key=lambda s: (not s.alive, s.address, s.node_id)), note


def _available_per_node(ray: Any) -> dict[str, dict[str, float]]:
    """Free resources per live node; Ray has no public call for it, so an absent one means 'unknown'."""
    try:
        from ray._private import state

        return dict(state.available_resources_per_node())
    except Exception:  # noqa: BLE001 - another Ray version: slots show as free
        return {}


def _running_attempts() -> tuple[dict[str, list[str]], str | None]:
    """node id -> the kisystem attempts running there, from Ray's state API (needs the dashboard)."""
    try:
        from ray.util.state import list_tasks

        tasks = list_tasks(filters=[("state", "=", "RUNNING")], limit=10_000, timeout=5,
                           raise_on_missing_output=False)  # fmt: skip
    except Exception:  # noqa: BLE001 - no dashboard, or an older Ray: say so instead
        return {}, NO_TASKS_NOTE
    running: dict[str, list[str]] = {}
    for task in tasks:
        name = getattr(task, "name", "") or ""
        if name.startswith(ATTEMPT_PREFIX) and getattr(task, "node_id", None):
            running.setdefault(task.node_id, []).append(_attempt_label(name))
    return running, None


def _attempt_label(name: str) -> str:
    task, _, rest = name[len(ATTEMPT_PREFIX):].partition(":it")
    iteration, _, model = rest.partition(":")
    return f"{task} · it {iteration} · {model}"


__all__ = ["MODEL_PREFIX", "NodeStatus", "cluster_status", "node_command", "ollama_models", "parse_serves"]
