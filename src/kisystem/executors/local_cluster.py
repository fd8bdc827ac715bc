"""A real two-node Ray cluster on this machine: for the executor tests and ``kisystem bench executors``.

``ray start --head`` plus a second ``ray start --address=127.0.0.1:PORT`` node, each with
``cpus`` CPUs, a 100 MB object store, explicit ports (the first free block of 72 among
``blocks``) and its own ``model:*`` resources.  Ray binds its nodes to the machine's
address (it replaces 127.0.0.1 on purpose); nothing outside this machine is contacted.

Every process the cluster starts inherits ``MARK_ENV``; :meth:`LocalCluster.stop` ends
exactly those processes (found by that mark or by their open files under the cluster's
temp dir, ended by pid), never any other Ray.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MARK_ENV = "KISYSTEM_LOCAL_RAY_CLUSTER"  # on every process of one cluster: how stop() finds them
NODE_ENV = "KISYSTEM_LOCAL_RAY_NODE"  # "head" or "second": which node a worker runs on
OBJECT_STORE = 100 * 1024 * 1024
BLOCK = 72  # ports of one cluster: GCS, 2 metric ports, 6 fixed and 16 worker ports per node (3 node generations)
WORKER_PORTS = 16  # per node: its workers' and drivers' gRPC ports


@dataclass(frozen=True)
class NodePorts:
    first: int  # node manager, object manager, agent listen, agent gRPC, runtime env agent, metrics
    workers: int

    def args(self) -> list[str]:
        names = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
                 "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")
        fixed = [arg for i, name in enumerate(names) for arg in (name, str(self.first + i))]
        return [*fixed, "--min-worker-port", str(self.workers), "--max-worker-port", str(self.workers + WORKER_PORTS - 1)]


@dataclass(frozen=True)
class Ports:
    base: int

    @property
    def gcs(self) -> int:
        return self.base

    @property
    def metrics_env(self) -> dict[str, str]:  # the autoscaler's and dashboard's own metric ports
        return {"AUTOSCALER_METRIC_PORT": str(self.base + 1), "DASHBOARD_METRIC_PORT": str(self.base + 2)}

    @property
    def head(self) -> NodePorts:
        return NodePorts(self.base + 3, self.base + 24)

    def second(self, generation: int = 0) -> NodePorts:
        """The second node's ports; ``generation`` 1 for the node that replaces a killed one."""
        return NodePorts(self.base + 10 + 7 * generation, self.base + 40 + WORKER_PORTS * generation)

    def all(self) -> range:
        return range(self.base, self.base + BLOCK)


def free_ports(blocks: Sequence[int]) -> Ports:
    """The first block whose every port a server can bind now (none taken by a live socket)."""
    for base in blocks:
        if all(_bindable(port) for port in Ports(base).all()):
            return Ports(base)
    raise RuntimeError(f"no free block of {BLOCK} ports starting at any of {list(blocks)}")


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Ray's servers bind: TIME_WAIT does not count
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


@dataclass
class LocalCluster:
    """``temp_dir``: Ray's session files and each node's kisystem home (keep the path short: Ray's
    sockets live there); ``pythonpath``: more import roots for the workers (the tests' own package)."""

    temp_dir: Path
    blocks: Sequence[int]
    cpus: int = 1
    pythonpath: Sequence[str] = ()
    mark: str = field(default_factory=lambda: uuid.uuid4().hex)
    ports: Ports = field(init=False)

    def __post_init__(self) -> None:
        self.ports = free_ports(self.blocks)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.ports.gcs}"

    def env(self, node: str) -> dict[str, str]:
        path = os.pathsep.join(p for p in (*self.pythonpath, os.environ.get("PYTHONPATH", "")) if p)
        return {**os.environ, MARK_ENV: self.mark, NODE_ENV: node, "PYTHONPATH": path,
                "KISYSTEM_HOME": str(self.temp_dir / f"home-{node}"),  # a worker's default workspaces: never ~
                "RAY_USAGE_STATS_ENABLED": "0", **self.ports.metrics_env}

    def start_head(self, resources: dict[str, float]) -> None:
        self._start("head", resources, ["--head", "--port", str(self.ports.gcs), "--temp-dir", str(self.temp_dir),
                                        "--include-dashboard=false", *self.ports.head.args()])

    def start_second(self, resources: dict[str, float], generation: int = 0) -> None:
        self._start("second", resources, ["--address", self.address, *self.ports.second(generation).args()])

    def _start(self, node: str, resources: dict[str, float], where: list[str]) -> None:
        cmd = [sys.executable, "-m", "ray.scripts.scripts", "start", *where, "--num-cpus", str(self.cpus),
               "--object-store-memory", str(OBJECT_STORE), "--disable-usage-stats", "--resources",
               json.dumps(resources)]
        done = subprocess.run(cmd, check=False, env=self.env(node), capture_output=True, text=True, timeout=180)
        if done.returncode != 0:
            raise RuntimeError(f"ray start ({node}) failed:\n{done.stdout}\n{done.stderr}")

    def processes(self, node: str | None = None, command: str | None = None) -> list[int]:
        """The pids of every live process of this cluster (of ``node``, named ``command``): those
        carrying its mark and, unless ``node`` is asked for, those holding a file under its temp
        dir (Ray's Python agents set their title over their environment, the mark with it)."""
        needles = {f"{MARK_ENV}={self.mark}".encode()} | ({f"{NODE_ENV}={node}".encode()} if node else set())
        root = f"{self.temp_dir.resolve()}{os.sep}"
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if command is not None and (entry / "comm").read_text().strip() != command:
                    continue
                if needles <= set((entry / "environ").read_bytes().split(b"\0")) or \
                        (node is None and _holds_file_under(entry, root)):
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def stop(self) -> None:
        for sig, wait_s in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            pids = self.processes()
            for pid in pids:
                _signal(pid, sig)
            deadline = time.monotonic() + wait_s
            while self.processes() and time.monotonic() < deadline:
                time.sleep(0.1)


def _holds_file_under(proc: Path, root: str) -> bool:
    for fd in (proc / "fd").iterdir():
        with contextlib.suppress(OSError):
            if os.readlink(fd).startswith(root):
                return True
    return False


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
