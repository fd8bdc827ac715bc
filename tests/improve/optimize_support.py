"""A small fleet, recorded outcomes with known answers, and opportunities for the optimization tests."""

from __future__ import annotations

from kisystem.bench.routing import OutcomeTable, Sample
from kisystem.improve.plans import Opportunity, Severity
from kisystem.loop.taskspec import PhaseSpec, TaskSpec
from kisystem.models.inventory import Inventory
from tests.improve.fleet_support import CPP, PY, fleet_toml, parse_fleet

FLEET_TOML = fleet_toml({"small": 60, "big": 120, "huge": 300}, {PY: ("small", "big"), CPP: ("big", "huge")})


def fleet() -> Inventory:
    """small (60 s timeout) -> big on Python; big -> huge on C++."""
    return parse_fleet(FLEET_TOML)


def ok(gen: float) -> Sample:
    return Sample(True, 100.0, gen, test_s=1.0)


def bad(gen: float) -> Sample:
    return Sample(False, 0.0, gen, test_s=1.0, severity=3, error_type="LOGIC")


def table(small: dict[str, tuple[Sample, ...]], big: dict[str, tuple[Sample, ...]],
          huge: dict[str, tuple[Sample, ...]] | None = None) -> OutcomeTable:
    """Python tasks recorded on small, big and huge (huge: never solves, unless given)."""
    huge = huge or {t: (bad(200), bad(200)) for t in small}
    return OutcomeTable.one_domain(PY, ("small", "big", "huge"),
                                   {t: {"small": small[t], "big": big[t], "huge": huge[t]} for t in small})


def spec(task_id: str, domain: str = PY) -> TaskSpec:
    return TaskSpec(id=task_id, domain=domain, language="python", prompt="p", solution_file="s.py",
                    test=PhaseSpec("true", 1.0))


# small is slow (50 s) but solves everything; a 45 s timeout on it only loses tasks.
SLOW_BUT_RIGHT = table({f"t{i}": (ok(50), ok(50)) for i in range(4)},
                       {f"t{i}": (ok(100), ok(100)) for i in range(4)})
# small fails slowly (50 s) on half the tasks; a 45 s timeout saves seconds and loses nothing.
SLOW_FAILURES = table({"t0": (ok(10), ok(10)), "t1": (ok(10), ok(10)),
                       "t2": (bad(50), bad(50)), "t3": (bad(50), bad(50))},
                      {f"t{i}": (ok(30), ok(30)) for i in range(4)})
# small solves nothing, big solves everything: starting on big is better.
SMALL_USELESS = table({f"t{i}": (bad(5), bad(5)) for i in range(4)}, {f"t{i}": (ok(20), ok(20)) for i in range(4)})
# small solves everything fast: starting on big is worse.
SMALL_GOOD = table({f"t{i}": (ok(5), ok(5)) for i in range(4)}, {f"t{i}": (ok(20), bad(20)) for i in range(2)}
                   | {f"t{i}": (bad(20), bad(20)) for i in range(2, 4)})


def slow(model: str = "small") -> Opportunity:
    """MEDIUM: AUTO's mildest remedy is the model's timeout x 0.75 (60 s -> 45 s for small)."""
    return Opportunity("performance_degradation", Severity.MEDIUM, model, PY, {"p90_s": 50.0, "sla_s": 60.0})


def declining(model: str = "small") -> Opportunity:
    """HIGH: AUTO's strongest remedy is to start the domain on the model after it."""
    return Opportunity("success_rate_decline", Severity.HIGH, model, PY, {"last_week": 0.9, "this_week": 0.5})
