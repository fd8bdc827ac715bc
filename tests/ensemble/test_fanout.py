"""The fan-out: members at once under per-endpoint semaphores, the tier timeout, failures, the early
stop, and no member task left behind.  Scripted models on virtual time: every second is exact."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from kisystem.config import EnsembleSettings
from kisystem.ensemble.fanout import SETTLED_EARLY, EndpointSemaphores, fan_out
from kisystem.ensemble.members import FanOut, Member, MemberAnswer, NotNeeded, Tier
from kisystem.errors import BackendError
from tests.ensemble.scripted import ScriptedGenerator, request_for, run_virtual


def ask(generator: ScriptedGenerator, members: Sequence[Member], timeout_s: float = 30.0, *, limit: int = 2,
        settled=None, on_answer=None, endpoint_of=lambda model: model) -> FanOut:  # fmt: skip
    return run_virtual(fan_out(generator, members, request_for, Tier.MEDIUM, timeout_s, endpoint_of=endpoint_of,
                               semaphores=EndpointSemaphores(limit), settled=settled, on_answer=on_answer))


def summary(out: FanOut) -> list[tuple[str, int, str, float, bool]]:
    return [(a.member.model, a.member.sample, a.text or a.error or "", a.seconds, a.dropped) for a in out.answers]


def test_members_run_at_once_and_answers_come_in_the_order_they_ended() -> None:
    gen = ScriptedGenerator({"a": (3.0, "slow"), "b": (1.0, "fast"), "c": (2.0, "mid")})
    out = ask(gen, [Member("a"), Member("b"), Member("c")])
    assert summary(out) == [("b", 0, "fast", 1.0, False), ("c", 0, "mid", 2.0, False), ("a", 0, "slow", 3.0, False)]
    assert out.wall_s == 3.0 and out.timeout_s == 30.0 and out.tier is Tier.MEDIUM and not out.settled_early
    assert gen.max_total == 3  # all three at once: the wall time is the slowest, not the sum
    assert [m.model for m in out.members] == ["a", "b", "c"] and len(out.valid) == 3


def test_the_members_requests_carry_their_sample_and_temperature() -> None:
    gen = ScriptedGenerator({"a": (1.0, "x")})
    ask(gen, [Member("a", 0, 0.0), Member("a", 1, 0.8)])
    assert sorted((r.seed, r.temperature) for r in gen.requests) == [(0, 0.0), (1, 0.8)]


def test_a_member_past_the_tier_timeout_is_dropped_logged_and_the_ensemble_still_answers(caplog) -> None:
    gen = ScriptedGenerator({"fast": (4.0, "42"), "slow": (100.0, "late")})
    with caplog.at_level(logging.WARNING, "kisystem.ensemble.fanout"):
        out = ask(gen, [Member("slow"), Member("fast")], timeout_s=30)
    assert summary(out) == [("fast", 0, "42", 4.0, False), ("slow", 0, "timeout after 30 s", 30.0, True)]
    assert out.wall_s == 30.0 and [a.text for a in out.valid] == ["42"] and not out.settled_early
    assert gen.cancelled == ["slow"] and all(t.done() for t in gen.tasks)
    assert ["ensemble member slow (sample 0) dropped: timeout after 30 s"] == [r.getMessage() for r in caplog.records]


def test_the_timeout_counts_the_wait_for_the_endpoint_semaphore() -> None:
    gen = ScriptedGenerator({"m": (5.0, "ok")})
    out = ask(gen, [Member("m", s) for s in range(3)], timeout_s=12, limit=1)
    assert summary(out) == [("m", 0, "ok", 5.0, False), ("m", 1, "ok", 10.0, False),
                            ("m", 2, "timeout after 12 s", 12.0, True)]  # fmt: skip
    assert gen.max_in_flight["m"] == 1 and gen.cancelled == ["m"]


def test_every_member_past_the_timeout_leaves_an_answerless_fan_out() -> None:
    gen = ScriptedGenerator({"a": (60.0, "x"), "b": (61.0, "y")})
    out = ask(gen, [Member("a"), Member("b")], timeout_s=0.5)
    assert [(a.error, a.dropped, a.seconds) for a in out.answers] == [("timeout after 0.5 s", True, 0.5)] * 2
    assert out.valid == [] and out.wall_s == 0.5 and sorted(gen.cancelled) == ["a", "b"]


def test_a_failing_member_is_recorded_with_its_error_and_stops_nobody(caplog) -> None:
    gen = ScriptedGenerator({"down": (1.0, BackendError("backend e at http://x: connection refused")),
                             "odd": (2.0, RuntimeError()), "up": (3.0, "fine")})  # fmt: skip
    with caplog.at_level(logging.WARNING, "kisystem.ensemble.fanout"):
        out = ask(gen, [Member("down"), Member("odd"), Member("up")])
    assert summary(out) == [("down", 0, "backend e at http://x: connection refused", 1.0, False),
                            ("odd", 0, "RuntimeError", 2.0, False), ("up", 0, "fine", 3.0, False)]  # fmt: skip
    assert [a.ok for a in out.answers] == [False, False, True] and gen.cancelled == []
    assert len([r for r in caplog.records if "failed" in r.getMessage()]) == 2


def test_an_empty_answer_is_an_answer_but_not_a_valid_one() -> None:
    out = ask(ScriptedGenerator({"a": (1.0, "  \n"), "b": (2.0, "x")}), [Member("a"), Member("b")])
    assert [(a.member.model, a.error, a.ok) for a in out.answers] == [("a", None, False), ("b", None, True)]


def agree_twice(answers: Sequence[MemberAnswer]) -> bool:
    texts = [a.text for a in answers if a.ok]
    return any(texts.count(t) >= 2 for t in texts)


def test_a_quorum_stops_early_and_cancels_the_rest() -> None:
    gen = ScriptedGenerator({"a": (1.0, "42"), "b": (2.0, "41"), "c": (3.0, "42"), "d": (50.0, "42"),
                             "e": (80.0, "7")})  # fmt: skip
    seen: list[int] = []

    def settled(answers: Sequence[MemberAnswer]) -> bool:
        seen.append(len(answers))
        return agree_twice(answers)

    out = ask(gen, [Member(m) for m in "abcde"], settled=settled)
    assert seen == [1, 2, 3]  # asked after each answer, with the answers so far
    assert out.settled_early and out.wall_s == 3.0
    assert summary(out) == [("a", 0, "42", 1.0, False), ("b", 0, "41", 2.0, False), ("c", 0, "42", 3.0, False),
                            ("d", 0, SETTLED_EARLY, 3.0, True), ("e", 0, SETTLED_EARLY, 3.0, True)]  # fmt: skip
    assert sorted(gen.cancelled) == ["d", "e"] and all(t.done() for t in gen.tasks)


def test_no_early_stop_without_a_quorum_and_none_asked_once_all_ended() -> None:
    gen = ScriptedGenerator({"a": (1.0, "1"), "b": (2.0, "2")})
    calls: list[int] = []
    out = ask(gen, [Member("a"), Member("b")], settled=lambda answers: calls.append(len(answers)) or False)
    assert not out.settled_early and calls == [1] and out.wall_s == 2.0  # after the last one nothing is left to stop


def test_members_ending_together_are_all_kept_when_the_first_of_them_settles() -> None:
    gen = ScriptedGenerator({"a": (2.0, "x"), "b": (2.0, "x"), "c": (2.0, "x"), "d": (9.0, "y")})
    out = ask(gen, [Member(m) for m in "abcd"], settled=agree_twice)
    assert summary(out) == [("a", 0, "x", 2.0, False), ("b", 0, "x", 2.0, False), ("c", 0, "x", 2.0, False),
                            ("d", 0, SETTLED_EARLY, 2.0, True)]  # fmt: skip


def test_on_answer_hears_every_answer_as_it_ends_including_the_dropped() -> None:
    heard: list[tuple[str, bool]] = []
    gen = ScriptedGenerator({"a": (1.0, "x"), "b": (99.0, "y")})
    out = ask(gen, [Member("a"), Member("b")], timeout_s=5, on_answer=lambda a: heard.append((a.member.model,
                                                                                                a.dropped)))
    assert heard == [("a", False), ("b", True)] == [(a.member.model, a.dropped) for a in out.answers]


def test_the_semaphore_limits_generations_per_endpoint() -> None:
    gen = ScriptedGenerator({m: (1.0, "x") for m in "abcdef"}, endpoint_of=lambda m: "one")
    out = ask(gen, [Member(m) for m in "abcdef"], limit=2, endpoint_of=lambda m: "one")
    assert gen.max_in_flight["one"] == 2 and out.wall_s == 3.0 and len(out.valid) == 6


def test_each_endpoint_has_its_own_semaphore() -> None:
    where = {"a": "e1", "b": "e1", "c": "e1", "d": "e2", "e": "e2", "f": "e2"}.__getitem__
    gen = ScriptedGenerator({m: (1.0, "x") for m in "abcdef"}, endpoint_of=where)
    out = ask(gen, [Member(m) for m in "abcdef"], limit=2, endpoint_of=where)
    assert (gen.max_in_flight["e1"], gen.max_in_flight["e2"], gen.max_total) == (2, 2, 4)
    assert out.wall_s == 2.0


def test_samples_of_one_model_share_its_endpoints_semaphore() -> None:
    gen = ScriptedGenerator({"m": (1.0, "x")})
    out = ask(gen, [Member("m", s, 0.8) for s in range(5)], limit=3)
    assert gen.max_in_flight["m"] == 3 and out.wall_s == 2.0


def test_cancelling_the_fan_out_ends_every_member_task() -> None:
    gen = ScriptedGenerator({"a": (1.0, "x"), "b": (100.0, "y"), "c": (100.0, "z")})

    async def scenario() -> None:
        task = asyncio.create_task(fan_out(gen, [Member("a"), Member("b"), Member("c"), Member("c", 1)], request_for,
                                           Tier.SIMPLE, 30.0, endpoint_of=lambda m: m,
                                           semaphores=EndpointSemaphores(1)))  # fmt: skip
        await asyncio.sleep(5.0)  # a answered, b and c generating, c's second sample waiting for its semaphore
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(gen.tasks) == 3 and all(t.done() for t in gen.tasks)
        assert sorted(gen.cancelled) == ["b", "c"]
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert others == []  # the waiting sample's task too: nothing outlives the fan-out

    run_virtual(scenario())


def test_a_settled_callback_that_raises_still_leaves_no_member_running() -> None:
    gen = ScriptedGenerator({"a": (1.0, "x"), "b": (100.0, "y")})

    def broken(answers: Sequence[MemberAnswer]) -> bool:
        raise ValueError("bad consensus")

    with pytest.raises(ValueError, match="bad consensus"):
        ask(gen, [Member("a"), Member("b")], settled=broken)
    assert gen.cancelled == ["b"] and all(t.done() for t in gen.tasks)


def test_endpoint_semaphores_come_from_the_config_and_need_a_slot() -> None:
    assert EndpointSemaphores.from_settings(EnsembleSettings()).limit == 2
    assert EndpointSemaphores.from_settings(EnsembleSettings(max_concurrent_per_endpoint=5)).limit == 5
    with pytest.raises(ValueError, match="at least one slot"):
        EndpointSemaphores(0)


def test_a_member_ended_as_not_needed_is_dropped_not_failed(caplog) -> None:
    gen = ScriptedGenerator({"a": (1.0, "answer"), "b": (2.0, NotNeeded("not needed: a candidate passed"))})
    with caplog.at_level(logging.INFO, logger="kisystem.ensemble.fanout"):
        out = ask(gen, [Member("a"), Member("b")])
    assert summary(out) == [("a", 0, "answer", 1.0, False), ("b", 0, "not needed: a candidate passed", 2.0, True)]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # nothing failed
