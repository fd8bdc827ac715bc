"""Serving the embedded models: llama.cpp's own OpenAI-compatible server, in-process.

``serve`` starts one xllamacpp ``Server`` per embedded model on 127.0.0.1 at the port of
its inventory endpoint and blocks until interrupted.  Everything else in kisystem talks
to these servers over HTTP like to any other endpoint.  ``EmbeddedFleet`` runs
``kisystem models serve`` as a child process (so llama.cpp's chatty stderr goes to a
log file) and waits until every model answers its health check.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx

from kisystem.errors import BackendTimeout, BackendUnreachable, UsageError
from kisystem.models import catalog
from kisystem.models.inventory import Inventory, ModelSpec

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class ServedModel:
    spec: ModelSpec
    url: str
    gguf: Path


def embedded_specs(inventory: Inventory, names: list[str] | None = None) -> list[ModelSpec]:
    """The inventory's embedded models, or the named subset of them."""
    specs = [m for m in inventory.models.values() if m.embedded]
    if names:
        unknown = sorted(set(names) - {m.name for m in specs})
        if unknown:
            embedded = ", ".join(m.name for m in specs)
            raise UsageError(f"not embedded models: {', '.join(unknown)} (embedded: {embedded})")
        specs = [m for m in specs if m.name in names]
    return specs


def port_of(url: str) -> int:
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost") or not parsed.port:
        raise UsageError(f"embedded endpoint {url!r} must be http://127.0.0.1:PORT")
    return parsed.port


# llama.cpp's OpenMP threads busy-wait between parallel regions by default; with two
# servers generating on a small machine their spinning threads starve each other several
# times over.  PASSIVE lets waiting threads sleep, at no cost on a quiet machine.  libgomp
# reads it once, when xllamacpp's native library loads, so it is set before that import.
OPENMP_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def start_server(spec: ModelSpec, gguf: Path, port: int, n_threads: int | None = None):
    """Load one GGUF into llama.cpp's server on 127.0.0.1:port; returns once it listens."""
    for name, value in OPENMP_ENV.items():
        os.environ.setdefault(name, value)  # the user's own setting wins
    import xllamacpp  # imported late: it loads native libraries

    params = xllamacpp.CommonParams()
    params.model.path = str(gguf)
    params.model_alias = {spec.name}
    params.n_ctx = catalog.embedded_model(spec.embedded).n_ctx
    params.cpuparams.n_threads = n_threads or max(1, os.cpu_count() or 1)
    params.port = port
    params.endpoint_metrics = True
    return xllamacpp.Server(params)


def serve(inventory: Inventory, models_dir: Path, names: list[str] | None = None,
          on_ready=None, stop: threading.Event | None = None) -> None:
    """Pull if needed, start every embedded model, block until SIGINT/SIGTERM or ``stop``."""
    stop = stop or threading.Event()
    servers = []
    for spec in embedded_specs(inventory, names):
        gguf = catalog.pull(models_dir, spec.embedded)
        url = inventory.endpoints[spec.endpoint].base_url
        started = time.monotonic()
        servers.append(start_server(spec, gguf, port_of(url)))
        if on_ready:
            on_ready(ServedModel(spec, url, gguf), time.monotonic() - started)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    servers.clear()  # dropping the Server objects shuts llama.cpp down


def _die_with_parent() -> None:
    """In the server child: the kernel sends it SIGTERM when kisystem dies, even by SIGKILL,
    so a killed run leaves no orphaned llama.cpp server holding its ports and memory."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def is_healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class EmbeddedFleet:
    """Runs ``kisystem models serve`` in a child process for the length of a ``with`` block.

    Models that already answer at their endpoint are reused, not started twice.
    """

    def __init__(self, inventory: Inventory, home: Path, names: list[str] | None = None,
                 config_file: Path | None = None, ready_timeout_s: float = 120.0) -> None:
        self.specs = embedded_specs(inventory, names)
        self.urls = {m.name: inventory.endpoints[m.endpoint].base_url for m in self.specs}
        self.home = home
        self.config_file = config_file
        self.ready_timeout_s = ready_timeout_s
        self.log_path = home / "logs" / "embedded-server.log"
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> "EmbeddedFleet":
        missing = [m.name for m in self.specs if not is_healthy(self.urls[m.name])]
        if missing:
            self._spawn(missing)
            self._wait_ready(missing)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def _spawn(self, names: list[str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "kisystem", "--home", str(self.home)]
        if self.config_file:
            cmd += ["--config", str(self.config_file)]
        cmd += ["models", "serve", "--quiet"]
        for name in names:
            cmd += ["--model", name]
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          preexec_fn=_die_with_parent)

    def _wait_ready(self, names: list[str]) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        pending = list(names)
        while pending:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                raise BackendUnreachable(f"embedded server exited with code {code}; see {self.log_path}")
            if time.monotonic() > deadline:
                self.close()
                raise BackendTimeout(f"embedded models {', '.join(pending)} not ready after "
                                     f"{self.ready_timeout_s:.0f} s; see {self.log_path}")
            pending = [n for n in pending if not is_healthy(self.urls[n])]
            time.sleep(0.2)
