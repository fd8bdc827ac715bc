"""Routing policies: which model of a domain's chain a task starts on.

A policy only picks the start; the supervisor's stop-loss router then escalates along
the chain from there and never moves back (DESIGN decision 3).

- ``static``: the route's start model, always.
- ``spec``: the seeds' rule: a strong meta-supervisor bias replaces the start model, then
  the hybrid decision's capability floor may raise it along the chain, never lower it.
- ``thompson``: discounted Thompson sampling on solved tasks per second of model time
  (:mod:`kisystem.routing.thompson`).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Protocol

from kisystem.config import OptimizationConfig
from kisystem.errors import KisystemError, UsageError
from kisystem.loop.taskspec import TaskSpec
from kisystem.models.inventory import Inventory
from kisystem.routing.hybrid import HybridDecision, apply_floor
from kisystem.routing.meta import MetaSupervisor
from kisystem.routing.thompson import ThompsonPolicy
from kisystem.store.learning import Clock, LearningStore, utc_now

log = logging.getLogger(__name__)


class RoutingPolicy(Protocol):
    name: str

    def start_model(self, task: TaskSpec, chain: Sequence[str]) -> str:
        """A model of ``chain`` (non-empty) to start ``task`` on."""
        ...


class StaticPolicy:
    name = "static"

    def start_model(self, task: TaskSpec, chain: Sequence[str]) -> str:
        return chain[0]


class SpecPolicy:
    """The seeds' rule: a meta bias in the chain replaces the start; without one the hybrid floor may raise it."""

    name = "spec"

    def __init__(self, store: LearningStore | None, config: OptimizationConfig, clock: Clock = utc_now) -> None:
        self.meta = MetaSupervisor(store, config, clock)
        self.hybrid = HybridDecision(self.meta, config.hybrid_decision_weights)

    def start_model(self, task: TaskSpec, chain: Sequence[str]) -> str:
        bias = self.meta.recommend_model_bias().get(task.domain)
        if bias in chain:  # strong evidence for a model: it replaces the start, no floor on top
            return bias
        score = self.hybrid.evaluate_task(task).score  # at the start: no retry, no error yet
        return chain[apply_floor(0, chain, score)]


def make_policy(config: OptimizationConfig, store: LearningStore, inventory: Inventory,
                rng: random.Random | None = None, clock: Clock = utc_now) -> RoutingPolicy:
    """The policy that config key ``routing_policy`` names, reading history from ``store``.

    ``inventory`` is not read by today's policies; it is part of the signature so that a
    policy may use the fleet (ranks, timeouts) without changing the callers.
    """
    if config.routing_policy == "thompson":
        return ThompsonPolicy.from_store(store, rng, clock)
    if config.routing_policy == "spec":
        return SpecPolicy(store, config, clock)
    raise UsageError(f"unknown routing_policy {config.routing_policy!r}")


def choose_start(policy: RoutingPolicy | None, task: TaskSpec, chain: Sequence[str]) -> str | None:
    """The start model to pass to ``Supervisor.run_task``, or None to keep the route's own start.

    ``chain`` is the task's chain of available models.  A failing policy (e.g. an
    unreadable learning database) is logged and ignored: routing advice never stops a task.
    """
    if policy is None or not chain:
        return None
    try:
        model = policy.start_model(task, chain)
    except KisystemError as err:
        log.warning("routing policy %s failed for %s, using the route's start: %s", policy.name, task.id, err)
        return None
    if model not in chain:
        log.warning("routing policy %s chose %r outside the chain %s; ignored", policy.name, model, list(chain))
        return None
    if model != chain[0]:
        log.info("routing policy %s starts %s on %s instead of %s", policy.name, task.id, model, chain[0])
    return None if model == chain[0] else model
