"""Serving the embedded models: llama.cpp's own OpenAI-compatible server, in-process.

``serve`` starts one xllamacpp ``Server`` per embedded model on 127.0.0.1 at the port of
its inventory endpoint and blocks until interrupted.  Everything else in kisystem talks
to these servers over HTTP like to any other endpoint.  ``EmbeddedFleet`` runs
``kisystem models serve`` as a child process (so llama.cpp's chatty stderr goes to a
log file) and waits until every model answers its health check.

A model is served with its inventory's ``context_tokens`` (the catalog's n_ctx unless the
inventory or the active configuration version says otherwise), the context its prompts
are checked against.  The child reads the inventory from the config file, not the active
version, so EmbeddedFleet names each context on its command line (``--n-ctx NAME=N``).
A server reused from another process that serves another context is warned about.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable
from urllib.parse import urlparse

import httpx

from kisystem.errors import BackendError, BackendTimeout, ServerStartError, UsageError, describe_os_error
from kisystem.models import catalog, server_records
from kisystem.models.inventory import CONTEXT_TOKENS_RANGE, Inventory, ModelSpec, integer_problem
from kisystem.parent_death import die_with_parent

log = logging.getLogger(__name__)
SERVER_LOG = "embedded-server.log"  # under HOME/logs
PROGRESS_EVERY_S = 1.0  # how often EmbeddedFleet's on_progress hears that a model is still loading


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


def served_n_ctx(spec: ModelSpec) -> int:
    """The context an embedded model is served with: its ``context_tokens``, else the catalog's."""
    return spec.context_tokens or catalog.embedded_model(spec.embedded).n_ctx


def parse_n_ctx(values: Iterable[str]) -> dict[str, int]:
    """``NAME=N`` pairs (``kisystem models serve --n-ctx``) as a dict; a bad one is a one-line UsageError."""
    contexts: dict[str, int] = {}
    for value in values:
        name, _, n = value.rpartition("=")
        tokens = int(n) if n.isdecimal() else n
        problem = integer_problem("n_ctx", tokens, CONTEXT_TOKENS_RANGE) if name else "expected MODEL=TOKENS"
        if problem:
            raise UsageError(f"--n-ctx {value!r}: {problem}")
        contexts[name] = int(tokens)
    return contexts


def with_contexts(inventory: Inventory, contexts: Mapping[str, int]) -> Inventory:
    """``inventory`` with the named embedded models' ``context_tokens`` replaced."""
    embedded_specs(inventory, list(contexts))  # every name an embedded model of the inventory
    models = {name: replace(spec, context_tokens=contexts.get(name, spec.context_tokens))
              for name, spec in inventory.models.items()}
    return replace(inventory, models=models)


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


def start_server(spec: ModelSpec, gguf: Path, port: int, n_threads: int | None = None,
                 log_file: Path | None = None, slots: int = 1):
    """Load one GGUF into llama.cpp's server on 127.0.0.1:port with ``slots`` parallel request
    slots; returns once it listens.

    A taken port is found before the model loads.  llama.cpp's start-up log goes to
    ``log_file`` when given, not to the terminal; a failed start becomes
    :class:`ServerStartError` naming the model, the port and llama.cpp's first error line."""
    ensure_port_free(port, spec.name)
    for name, value in OPENMP_ENV.items():
        os.environ.setdefault(name, value)  # the user's own setting wins
    import xllamacpp  # imported late: it loads native libraries

    params = server_params(xllamacpp.CommonParams(), spec, gguf, port, n_threads, slots)
    with _native_log_to(log_file) as log:
        try:
            return xllamacpp.Server(params)
        except RuntimeError as err:  # xllamacpp says only "Failed to init server"; llama.cpp's log says why
            why = log.first_error() or str(err)
            where = f" (its log: {log_file})" if log.path else ""
            raise ServerStartError(f"llama.cpp could not serve {spec.name} from {gguf} on 127.0.0.1:{port}: "
                                   f"{why}{where}") from err


def server_params(params, spec: ModelSpec, gguf: Path, port: int, n_threads: int | None = None, slots: int = 1):
    """``params`` (xllamacpp's CommonParams) set up to serve ``spec`` from ``gguf`` on ``port``.

    ``slots`` requests are served at once (the ensemble's concurrent members, config
    ``ensemble.server_slots``).  llama.cpp splits its context evenly over the slots, so it is
    given the model's context once per slot: every request keeps the whole context (the KV
    cache grows by the same factor)."""
    if slots < 1:
        raise UsageError(f"an embedded server needs at least one slot, not {slots}")
    params.model.path = str(gguf)
    params.model_alias = {spec.name}
    params.n_parallel = slots
    params.n_ctx = served_n_ctx(spec) * slots
    params.cpuparams.n_threads = n_threads or max(1, os.cpu_count() or 1)
    params.port = port
    params.endpoint_metrics = True
    return params


class _NativeLog:
    """What llama.cpp wrote to its log file since ``start``; ``path`` is None when it was not redirected."""

    def __init__(self, path: Path | None, start: int) -> None:
        self.path = path
        self.start = start

    def first_error(self) -> str | None:
        if self.path is None:
            return None
        with self.path.open("rb") as fh:
            fh.seek(self.start)
            text = fh.read().decode("utf-8", "replace")
        found = _LLAMA_ERROR.search(text)
        return found.group(1).strip() if found else None


_LLAMA_ERROR = re.compile(r"^\S+ E (.+)$", re.MULTILINE)  # "0.00.008.675 E gguf_init_from_reader: invalid magic"


@contextmanager
def _native_log_to(path: Path | None) -> Iterator[_NativeLog]:
    """Point file descriptor 2, where llama.cpp logs, at ``path`` for the block (unchanged if it cannot be opened)."""
    try:
        if path is None:
            raise FileNotFoundError("no log file given")
        path.parent.mkdir(parents=True, exist_ok=True)
        sink = path.open("ab")
    except OSError:  # no log file, or an unwritable home: llama.cpp keeps writing to stderr
        yield _NativeLog(None, 0)
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        os.dup2(sink.fileno(), 2)
        yield _NativeLog(path, sink.tell())
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        sink.close()


def ensure_port_free(port: int, model: str) -> None:
    """Raise :class:`ServerStartError` when something already listens on 127.0.0.1:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will: TIME_WAIT is no conflict
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as err:
            reason = describe_os_error(err)
            if err.errno == errno.EADDRINUSE:
                reason = ("the port is already in use by another process; stop that process, or give the "
                          "model's endpoint another port in the inventory")
            raise ServerStartError(f"cannot serve {model} on 127.0.0.1:{port}: {reason}") from err


def serve(inventory: Inventory, models_dir: Path, names: list[str] | None = None,
          on_ready=None, stop: threading.Event | None = None, log_file: Path | None = None,
          slots: int = 1) -> None:
    """Pull if needed, start every embedded model, block until SIGINT/SIGTERM or ``stop``.

    llama.cpp's start-up log goes to ``log_file`` (default HOME/logs/embedded-server.log,
    HOME being the parent of ``models_dir``), the file EmbeddedFleet's child logs to."""
    stop = stop or threading.Event()
    log_file = log_file or models_dir.parent / "logs" / SERVER_LOG
    specs = embedded_specs(inventory, names)
    for spec in specs:  # every port before any model loads: a taken one fails in a second, not after a load
        ensure_port_free(port_of(inventory.endpoints[spec.endpoint].base_url), spec.name)
    servers = []
    for spec in specs:
        gguf = catalog.pull(models_dir, spec.embedded)
        url = inventory.endpoints[spec.endpoint].base_url
        started = time.monotonic()
        servers.append(start_server(spec, gguf, port_of(url), log_file=log_file, slots=slots))
        if on_ready:
            on_ready(ServedModel(spec, url, gguf), time.monotonic() - started)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    servers.clear()  # dropping the Server objects shuts llama.cpp down


def _die_with_parent() -> None:
    """In the server child: SIGKILL when kisystem dies, even by SIGKILL, so a killed run leaves
    no orphaned llama.cpp server holding its ports and memory (SIGKILL, since a server once hung
    in llama.cpp's shutdown after a SIGTERM)."""
    die_with_parent(signal.SIGKILL)


def serves(url: str, name: str, timeout: float = 2.0) -> bool:
    """True when the OpenAI-compatible server at ``url`` lists model ``name``."""
    try:
        listed = httpx.get(f"{url}/v1/models", timeout=timeout).json().get("data", [])
    except (httpx.HTTPError, ValueError, AttributeError):
        return False
    return any(isinstance(m, dict) and m.get("id") == name for m in listed)


def served_context(url: str, timeout: float = 2.0) -> int | None:
    """The context (per request slot) a llama.cpp server at ``url`` serves, from its ``/props``; None
    when it does not say."""
    try:
        props = httpx.get(f"{url}/props", timeout=timeout).json()
    except (httpx.HTTPError, ValueError):
        return None
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
    return n_ctx if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) else None


def is_healthy(url: str, timeout: float = 1.0) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


class EmbeddedFleet:
    """Runs ``kisystem models serve`` in a child process for the length of a ``with`` block.

    Models that already answer at their endpoint are reused, not started twice, unless a
    crashed kisystem left that server behind (see ``server_records``): it is replaced.
    """

    def __init__(self, inventory: Inventory, home: Path, names: list[str] | None = None,
                 config_file: Path | None = None, ready_timeout_s: float = 120.0,
                 on_progress: Callable[[str, str], None] | None = None) -> None:
        """``on_progress(model, status)``: "loading" about once a second while a model loads, then "ready"."""
        self.on_progress = on_progress
        self.specs = embedded_specs(inventory, names)
        self.urls = {m.name: inventory.endpoints[m.endpoint].base_url for m in self.specs}
        self.home = home
        self.config_file = config_file
        self.ready_timeout_s = ready_timeout_s
        self.log_path = home / "logs" / "embedded-server.log"
        self._proc: subprocess.Popen | None = None
        self._ports: list[int] = []  # served by self._proc
        self._log_start = 0  # where this start's part of the log begins

    def __enter__(self) -> "EmbeddedFleet":
        missing = [m.name for m in self.specs if not self._reusable(m.name)]
        if missing:
            self._spawn(missing)
            self._wait_ready(missing)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _reusable(self, name: str) -> bool:
        """A server already answering on ``name``'s port, unless a crash left it: that one is stopped."""
        url = self.urls[name]
        if not is_healthy(url):
            return False
        state, pid = server_records.state_of(self.home, port_of(url))
        if state == "orphan" and pid is not None:
            log.warning("stopping the server on %s (pid %d): the kisystem that started it is gone", url, pid)
            server_records.stop_orphan(pid)
            return False
        if state == "foreign" and not serves(url, name):
            raise ServerStartError(f"cannot serve {name} on {url}: the port is taken by a server that does not "
                                   "serve it; stop that server, or give the model's endpoint another port")
        self._check_context(name)
        return True

    def _check_context(self, name: str) -> None:
        """A reused server keeps the context it was started with: one line when it is not this configuration's."""
        spec = next(m for m in self.specs if m.name == name)
        served, wanted = served_context(self.urls[name]), served_n_ctx(spec)
        if served is not None and served != wanted:
            log.warning("reusing the server of %s on %s, which serves a %d-token context, not this configuration's "
                        "%d; stop it to have kisystem start one with %d", name, self.urls[name], served, wanted, wanted)

    def close(self) -> None:
        if self._proc is not None:
            server_records.forget(self.home, self._ports, self._proc.pid)
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None

    def _spawn(self, names: list[str]) -> None:
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        except OSError as err:
            raise ServerStartError(f"cannot start the embedded models: {describe_os_error(err)}") from err
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(self.serve_command(names), stdout=log_file, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        self._ports = [port_of(self.urls[n]) for n in names]
        server_records.record(self.home, self._ports, self._proc.pid)

    def serve_command(self, names: list[str]) -> list[str]:
        """The child's command line: each model with the context this inventory gives it, which may be
        the active configuration version's rather than the config file's."""
        cmd = [sys.executable, "-m", "kisystem", "--home", str(self.home)]
        if self.config_file:
            cmd += ["--config", str(self.config_file)]
        cmd += ["models", "serve", "--quiet"]
        for spec in (m for m in self.specs if m.name in names):
            cmd += ["--model", spec.name, "--n-ctx", f"{spec.name}={served_n_ctx(spec)}"]
        return cmd

    def _wait_ready(self, names: list[str]) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        next_report = time.monotonic()
        pending = list(names)
        while pending:
            if self._proc.poll() is not None:
                why = self._child_error() or f"exited with code {self._proc.returncode}"
                raise ServerStartError(f"embedded server: {why} (log: {self.log_path})")
            if time.monotonic() > deadline:
                self.close()
                raise BackendTimeout(f"embedded models {', '.join(pending)} not ready after "
                                     f"{self.ready_timeout_s:.0f} s; see {self.log_path}")
            ready = [n for n in pending if is_healthy(self.urls[n])]
            pending = [n for n in pending if n not in ready]
            if time.monotonic() >= next_report:
                self._progress(pending, "loading")
                next_report = time.monotonic() + PROGRESS_EVERY_S
            self._progress(ready, "ready")
            time.sleep(0.2)

    def _child_error(self) -> str | None:
        """The child's own one-line ``error: ...`` from this start's part of the log."""
        try:
            with self.log_path.open("rb") as log_file:
                log_file.seek(self._log_start)
                lines = log_file.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return None
        errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        return errors[-1] if errors else None

    def _progress(self, names: list[str], status: str) -> None:
        for name in names if self.on_progress is not None else []:
            self.on_progress(name, status)

    def revive(self, name: str) -> bool:
        """Restart the servers when ``name``'s has died; True once it answers again.

        The child serving it is stopped and one is started for every model of the fleet that
        no longer answers (a crash takes the whole child, so usually all of them)."""
        if name not in self.urls or is_healthy(self.urls[name]):
            return False
        self.close()
        dead = [n for n in self.urls if not is_healthy(self.urls[n])]
        log.warning("the embedded server of %s stopped answering; restarting %s", name, ", ".join(dead))
        try:
            self._spawn(dead)
            self._wait_ready(dead)
        except BackendError as err:
            log.warning("restarting %s failed: %s", ", ".join(dead), err)
            return False
        return True
