"""Which models their backends have loaded, for the Models page, without a page ever waiting on the network.

The same question ``kisystem models list`` answers (its "reachable" and "loaded" columns, asked as
:mod:`kisystem.models.loaded` says).  :class:`BackendProbe` asks every endpoint of the inventory at once, each
with a short timeout, in a background thread, and keeps the answer for ``ttl_s``; a page reads the kept
answer and at most starts a refresh.  Only the very first read waits, and for at most ``wait_s``
(one timeout): a backend that hangs or a port that refuses shows as "unreachable" or "unknown", never as
a slow page.  Without an inventory (a dashboard created without one) every model is "unknown".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from kisystem.models.base import Endpoint
from kisystem.models.inventory import Inventory
from kisystem.models.loaded import loaded_url, served_names

LOADED, NOT_LOADED, UNREACHABLE, UNKNOWN = "loaded", "not loaded", "unreachable", "unknown"
STATES: tuple[str, ...] = (LOADED, NOT_LOADED, UNREACHABLE, UNKNOWN)
TIMEOUT_S = 1.0
TTL_S = 15.0


@dataclass(frozen=True)
class Loaded:
    """A model's state on its backend: one of :data:`STATES`, with where it was asked."""

    model: str
    state: str
    backend: str | None = None
    url: str | None = None


def probe_endpoint(http: httpx.Client, endpoint: Endpoint) -> list[str] | None:
    """The models ``endpoint`` reports loaded; None when it does not answer (in ``http``'s timeout, or sensibly)."""
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    try:
        answer = http.get(loaded_url(endpoint), headers=headers)
        answer.raise_for_status()
        return served_names(answer.json())
    except (httpx.HTTPError, ValueError):
        return None


class BackendProbe:
    """The loaded state of every inventory model, refreshed in the background every ``ttl_s`` seconds."""

    def __init__(self, inventory: Inventory | None, *, timeout_s: float = TIMEOUT_S, ttl_s: float = TTL_S,
                 wait_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                 transport: httpx.BaseTransport | None = None) -> None:  # fmt: skip
        self.inventory = inventory
        self.timeout_s = timeout_s
        self.ttl_s = ttl_s
        self.wait_s = timeout_s if wait_s is None else min(wait_s, timeout_s)
        self._clock = clock
        # Made once, here: a client loads its TLS settings (a good part of a second), which the first
        # page load would otherwise wait for.  httpx clients may be shared between threads.
        self._http = httpx.Client(timeout=timeout_s, transport=transport) if inventory is not None else None
        self._lock = threading.Lock()
        self._served: dict[str, list[str] | None] | None = None  # endpoint -> loaded names (None: no answer)
        self._at: float | None = None
        self._refreshing: threading.Thread | None = None

    def states(self) -> dict[str, Loaded]:
        """Every inventory model's state as last probed; starts a refresh when that is older than ``ttl_s``."""
        if self.inventory is None:
            return {}
        refresh = self._start_refresh()
        if refresh is not None and self._served is None:
            refresh.join(self.wait_s)  # the first read only: later ones show the kept answer
        with self._lock:
            served = self._served
        return {name: self._state(name, served) for name in self.inventory.models}

    def state(self, model: str) -> Loaded:
        """``model``'s state; "unknown" for a model the inventory lacks (or without an inventory)."""
        return self.states().get(model) or Loaded(model, UNKNOWN)

    def _start_refresh(self) -> threading.Thread | None:
        with self._lock:
            if self._refreshing is not None and self._refreshing.is_alive():
                return self._refreshing
            if self._at is not None and self._clock() - self._at < self.ttl_s:
                return None
            self._refreshing = threading.Thread(target=self._refresh, name="kisystem-backend-probe", daemon=True)
            self._refreshing.start()
            return self._refreshing

    def _refresh(self) -> None:
        if self.inventory is None or self._http is None:
            return
        http, endpoints = self._http, list(self.inventory.endpoints.values())
        with ThreadPoolExecutor(max_workers=max(1, len(endpoints))) as pool:
            found = pool.map(lambda e: probe_endpoint(http, e), endpoints)
            served = {e.name: names for e, names in zip(endpoints, found, strict=True)}
        with self._lock:
            self._served, self._at = served, self._clock()

    def _state(self, model: str, served: dict[str, list[str] | None] | None) -> Loaded:
        spec = self.inventory.models.get(model) if self.inventory else None
        if spec is None or self.inventory is None:
            return Loaded(model, UNKNOWN)
        endpoint = self.inventory.endpoints[spec.endpoint]
        if served is None or endpoint.name not in served:
            state = UNKNOWN  # still being asked
        else:
            names = served[endpoint.name]
            state = UNREACHABLE if names is None else LOADED if model in names else NOT_LOADED
        return Loaded(model, state, endpoint.backend, endpoint.base_url)
