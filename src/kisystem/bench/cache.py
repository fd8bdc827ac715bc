"""A benchmark's memory: every model answer and every judged attempt, kept in SQLite.

Benchmarks on 2 cores take hours of generation, more than one sitting holds.  Every
answer is stored under the exact request that produced it (model, prompt or messages,
sampling, seed, limits), and every judged attempt under its task and that request, so
an interrupted benchmark resumes where it stopped, pieces of a range merge, and arms
that ask the same question (one shot, and the first sample of resampling) pay once.

A judged attempt is also keyed by a digest of the judging code, so a change there judges
again.  A cache hit counts the recorded generation, build and test seconds as *replayed*, so
that a resumed benchmark reports the time the work took when it was done.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from pathlib import Path

from kisystem.loop.attempt import Attempt, AttemptRunner, Emit, Failure
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.base import Generation, GenerationRequest, Mode, OnText
from kisystem.store.db import connect

# What turns an answer into a verdict; a judged attempt is reused only while these are unchanged.
JUDGING_SOURCES = ("loop/attempt.py", "loop/extract.py", "loop/phases.py", "loop/scoring.py", "sandbox/judge")

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, model TEXT NOT NULL, generation TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS attempts (task TEXT NOT NULL, key TEXT NOT NULL, attempt TEXT NOT NULL,
                                     PRIMARY KEY (task, key));
"""


def answers_path(home: Path) -> Path:
    """The cache every benchmark shares: one question asked by two benchmarks is paid once."""
    return home / "bench" / "answers.db"


@contextlib.contextmanager
def shared_cache(sup, path: Path) -> Iterator[BenchCache]:
    """Route ``sup``'s generations and judged attempts through the cache at ``path``."""
    cache = BenchCache(path)
    sup.generator = CachedGenerator(sup.generator, cache)
    sup.attempts = CachedAttempts(sup.attempts, cache)
    try:
        yield cache
    finally:
        cache.close()


@functools.cache
def judging_version() -> str:
    """A digest of the judging code, so that a cached verdict outlives no change to it."""
    root, digest = Path(__file__).resolve().parents[1], hashlib.sha256()
    for name in JUDGING_SOURCES:
        path = root / name
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def request_key(request: GenerationRequest) -> str:
    """What decides an answer: everything in the request (the mode is the inventory's)."""
    fields = asdict(request)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class BenchCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = connect(path)
        self._db.executescript(SCHEMA)
        self.replayed_s = 0.0  # seconds of recorded work that hits stood in for
        self.hits = 0
        self.misses = 0

    def close(self) -> None:
        self._db.close()

    def answer(self, request: GenerationRequest) -> Generation | None:
        row = self._one("SELECT generation FROM answers WHERE key = ?", request_key(request))
        return Generation(**json.loads(row)) if row else None

    def keep_answer(self, request: GenerationRequest, generation: Generation) -> None:
        self._put("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)",
                  request_key(request), request.model, json.dumps(asdict(generation)))

    def attempt(self, task: TaskSpec, request: GenerationRequest) -> Attempt | None:
        row = self._one("SELECT attempt FROM attempts WHERE task = ? AND key = ?", task.id, _attempt_key(request))
        if row is None:
            return None
        data = json.loads(row)
        failure = data.pop("failure", None)
        return Attempt(**data, failure=Failure(**failure) if failure else None)

    def keep_attempt(self, task: TaskSpec, request: GenerationRequest, attempt: Attempt) -> None:
        self._put("INSERT OR REPLACE INTO attempts VALUES (?, ?, ?)",
                  task.id, _attempt_key(request), json.dumps(asdict(attempt)))

    def _one(self, sql: str, *args: str) -> str | None:
        row = self._db.execute(sql, args).fetchone()
        return row[0] if row else None

    def _put(self, sql: str, *args: str) -> None:
        try:
            self._db.execute(sql, args)
        except sqlite3.Error:  # a cache that cannot write costs a rerun, never the benchmark
            pass


def _attempt_key(request: GenerationRequest) -> str:
    return f"{request_key(request)}/{judging_version()}"


class CachedGenerator:
    """Answers from the cache where the same request was asked before, else from ``inner``."""

    def __init__(self, inner, cache: BenchCache) -> None:
        self.inner = inner
        self.cache = cache

    async def generate(self, request: GenerationRequest, on_text: OnText | None = None) -> Generation:
        cached = self.cache.answer(request)
        if cached is not None:
            self.cache.hits += 1
            self.cache.replayed_s += cached.total_s
            return cached
        self.cache.misses += 1
        generation = await self.inner.generate(request, on_text)
        self.cache.keep_answer(request, generation)
        return generation


class CachedAttempts:
    """An AttemptRunner whose judged attempts are kept, keyed by task and request."""

    def __init__(self, inner: AttemptRunner, cache: BenchCache) -> None:
        self.inner = inner
        self.cache = cache

    @property
    def level(self):
        return self.inner.level

    @contextlib.asynccontextmanager
    async def task_run(self, task: TaskSpec, run_id: str) -> AsyncIterator[object]:
        async with self.inner.task_run(task, run_id) as judged:
            yield judged

    def retire(self, run_id: str, *, solved: bool) -> None:
        self.inner.retire(run_id, solved=solved)

    def request_for(self, *args, **kwargs) -> GenerationRequest:
        return self.inner.request_for(*args, **kwargs)

    async def run(self, task: TaskSpec, run_id: str, iteration: int, model: str, mode: Mode,
                  request: GenerationRequest, generation: Generation, emit: Emit) -> Attempt:
        cached = self.cache.attempt(task, request)
        if cached is not None:
            self.cache.replayed_s += cached.t_build + cached.t_test + cached.t_profile
            emit("score", score=cached.score, error=cached.failure.error_type if cached.failure else None,
                 cached=True)
            return cached
        attempt = await self.inner.run(task, run_id, iteration, model, mode, request, generation, emit)
        self.cache.keep_attempt(task, request, attempt)
        return attempt
