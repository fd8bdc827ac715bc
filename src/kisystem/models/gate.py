"""A machine-wide cap on concurrent generations by this machine's llama.cpp servers.

Two llama.cpp servers generating at once on a small machine slow each other several
times over (their threads fight for the same cores), so every kisystem process on the
machine (the loop, the queue, a benchmark) takes one of N *slots* before it asks a
local model for tokens.  A slot is an exclusive ``fcntl.flock`` on one of N files in
the lock directory: the kernel releases it when the holder's file is closed, and so
when the holding process dies, even by SIGKILL; a counter in a file could leak forever.

Waiting polls the slots without blocking (and with a short, growing ``asyncio.sleep``
between rounds), so the event loop keeps running, and a waiter cancelled while it sleeps
holds nothing.  Polling is not first come, first served: so that a caller generating back
to back cannot starve the waiters, a gate that has just released a slot waits a little
longer than the slowest poll before it asks again.  Endpoints on other machines are not
gated: :func:`is_local` tells which.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import math
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlparse

from kisystem.paths import Paths

SLOT_PREFIX = "generation-slot-"
THREADS_PER_GENERATION = 2
FIRST_POLL_S = 0.002
MAX_POLL_S = 0.02
COURTESY_S = 2 * MAX_POLL_S  # after our own release: every poller gets a try first


def slots_for(cores: int | None = None) -> int:
    """The automatic cap for ``cores`` cores (default: this machine's).

    A llama.cpp generation keeps about two threads busy (on the 2-core target machine
    each server runs 2 threads); more generations than ``cores // 2`` at once only make
    them take turns on the cores, and their OpenMP threads spin against each other.
    """
    cores = cores if cores is not None else os.cpu_count() or 1
    return max(1, cores // THREADS_PER_GENERATION)


def configured_slots(value: int, cores: int | None = None) -> int:
    """The config key ``max_concurrent_generations``: 0 means :func:`slots_for` the cores."""
    return value if value > 0 else slots_for(cores)


def is_local(base_url: str) -> bool:
    """Whether an endpoint's URL points at this machine (loopback), i.e. at our own CPU."""
    host = urlparse(base_url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class GenerationGate:
    """A counting semaphore shared by every process that uses the same lock directory."""

    def __init__(self, locks_dir: Path, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"a generation gate needs at least one slot, not {slots}")
        self.locks_dir = locks_dir
        self.slots = slots
        self._released_at = -math.inf

    @classmethod
    def for_paths(cls, paths: Paths | None = None, max_concurrent_generations: int = 0) -> GenerationGate:
        """The gate in the kisystem home's lock directory, sized by the config value (0: auto)."""
        paths = paths or Paths.resolve()
        return cls(paths.locks_dir, configured_slots(max_concurrent_generations))

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[float]:
        """Hold one slot for the ``async with`` block; yields the seconds spent waiting."""
        started = time.monotonic()
        fd = await self._acquire()
        try:
            yield time.monotonic() - started
        finally:
            os.close(fd)  # closing the file drops its flock
            self._released_at = time.monotonic()

    async def _acquire(self) -> int:
        courtesy = self._released_at + COURTESY_S - time.monotonic()
        if courtesy > 0:
            await asyncio.sleep(courtesy)
        delay = FIRST_POLL_S
        while True:
            fd = self.try_acquire()
            if fd is not None:
                return fd
            await asyncio.sleep(delay)  # a cancellation lands here, holding nothing
            delay = min(MAX_POLL_S, delay * 2)

    def try_acquire(self) -> int | None:
        """A held slot's file descriptor (close it to release), or None when all are taken."""
        self.locks_dir.mkdir(parents=True, exist_ok=True)
        for k in range(self.slots):
            fd = os.open(self.locks_dir / f"{SLOT_PREFIX}{k}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                raise
            return fd
        return None
