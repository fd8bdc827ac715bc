"""The ensemble end to end with scripted models on virtual time: tier sizing over fleets of 1, 3 and
12 models, the tier timeout, the fallback, the early stop, the query cache, the learning record, and
a task solved by judged candidates (scripted judging; the real sandbox is in test_ensemble_cli)."""

from __future__ import annotations

import pytest

from kisystem.ensemble.cache import QueryCache
from kisystem.ensemble.consensus import Method
from kisystem.ensemble.ensemble import Ensemble
from kisystem.ensemble.fanout import SETTLED_EARLY
from kisystem.ensemble.members import Tier
from kisystem.ensemble.record import ASK_DOMAIN, NOT_NEEDED
from kisystem.ensemble.tiers import members_for
from kisystem.errors import BackendError
from kisystem.loop.attempt import CHAT_MAX_TOKENS
from kisystem.store.learning import LearningStore
from tests.ensemble.judging import TASK, ScriptedJudging, config, fleet
from tests.ensemble.scripted import ScriptedGenerator, run_virtual


def ensemble(n: int, script, *, store=None, cache=None, attempts=None,
             **settings) -> tuple[Ensemble, ScriptedGenerator]:
    inventory = fleet(n)
    gen = ScriptedGenerator(script)
    return Ensemble(config(**settings), inventory, gen, list(inventory.models), store=store, cache=cache,
                    attempts=attempts), gen


@pytest.fixture
def store(tmp_path):
    with LearningStore.open(tmp_path / "learning.db") as s:
        yield s


@pytest.mark.parametrize(("n", "tier", "models", "generations"), [
    (1, Tier.SIMPLE, ["m1"], 3), (1, Tier.EXPERT, ["m1"], 3),
    (3, Tier.SIMPLE, ["m1"], 3), (3, Tier.MEDIUM, ["m1", "m2"], 5), (3, Tier.EXPERT, ["m1", "m2", "m3"], 9),
    (12, Tier.SIMPLE, ["m1", "m2", "m3"], 3), (12, Tier.COMPLEX, [f"m{i}" for i in range(1, 9)], 8),
    (12, Tier.EXPERT, [f"m{i}" for i in range(1, 13)], 12),
])  # fmt: skip
def test_the_tier_sizes_the_fan_out_to_the_fleet(n, tier, models, generations) -> None:
    """The fastest models first by rank (m10 is no faster than m2), samples where the fleet is small."""
    ens, gen = ensemble(n, {f"m{i}": (1.0, f"answer number {i}") for i in range(1, n + 1)}, quorum_share=0.0)
    result = run_virtual(ens.ask("What is it?", Tier(tier)))
    asked = sorted({r.model for r in gen.requests}, key=lambda m: int(m[1:]))
    assert asked == models and len(gen.requests) == generations
    assert [(m.model, m.sample) for m in result.rounds[0].fanout.members] == [
        (m.model, m.sample) for m in members_for(tier, [f"m{i}" for i in range(1, n + 1)], ens.settings)]
    members = result.rounds[0].fanout.members
    assert {(r.model, r.seed or 0) for r in gen.requests} == {(m.model, m.sample) for m in members}
    assert result.tier is tier and result.classification is None


def test_an_unnamed_tier_comes_from_the_classifier() -> None:
    ens, _ = ensemble(3, {m: (1.0, "4") for m in ("m1", "m2", "m3")})
    result = run_virtual(ens.ask("What is 2 + 2?"))
    assert result.tier is Tier.SIMPLE and result.classification.tier is Tier.SIMPLE
    assert result.to_dict()["classification"]["reasons"]


def test_a_member_past_its_timeout_is_dropped_and_the_ensemble_still_answers() -> None:
    ens, gen = ensemble(3, {"m1": (2.0, "Paris"), "m2": (200.0, "Lyon"), "m3": (5.0, "Paris")},
                        max_samples_per_model=1, quorum_share=0.0)
    result = run_virtual(ens.ask("Capital of France?", Tier.EXPERT))
    fanout = result.rounds[0].fanout
    assert result.answer == "Paris" and not result.fallback
    late = next(a for a in fanout.answers if a.member.model == "m2")
    assert late.dropped and late.error == "timeout after 120 s" and late.seconds == 120.0
    assert fanout.wall_s == 120.0 and gen.cancelled == ["m2"]
    assert result.consensus.confidence == 1.0 and result.consensus.considered == 2


def test_every_member_failing_falls_back_once_to_the_tier_below_at_a_reduced_budget() -> None:
    down = BackendError("backend answered 500")
    script = {"m1": [(1.0, down), (1.0, "Paris")], "m2": (1.0, down), "m3": (1.0, down)}
    ens, gen = ensemble(3, script, max_samples_per_model=1, fallback_max_tokens_share=0.5)
    result = run_virtual(ens.ask("Capital of France?", Tier.EXPERT))
    first, second = result.rounds
    assert not first.candidates and [a.error for a in first.fanout.answers] == ["backend answered 500"] * 3
    assert second.fallback and second.fanout.tier is Tier.COMPLEX and second.max_tokens_share == 0.5
    assert [r.max_tokens for r in gen.requests] == [CHAT_MAX_TOKENS] * 3 + [CHAT_MAX_TOKENS // 2] * 2
    assert result.answer == "Paris" and result.fallback


def test_the_fallback_from_simple_is_simple_again_and_may_find_nothing() -> None:
    ens, gen = ensemble(1, {"m1": (1.0, "   ")})  # empty answers are no answers
    result = run_virtual(ens.ask("Say something", Tier.SIMPLE))
    assert [r.fanout.tier for r in result.rounds] == [Tier.SIMPLE, Tier.SIMPLE]
    assert result.consensus.method is Method.NONE and result.answer == "" and len(gen.requests) == 6


def test_a_quorum_stops_the_fan_out_before_the_slow_members() -> None:
    script = {"m1": (1.0, "The answer is 42."), "m2": (2.0, "the answer is 42"), "m3": (60.0, "41")}
    ens, gen = ensemble(3, script, max_samples_per_model=1, quorum_share=0.5)
    result = run_virtual(ens.ask("What is the answer?", Tier.EXPERT))
    fanout = result.rounds[0].fanout
    assert fanout.settled_early and fanout.wall_s == 2.0 and gen.cancelled == ["m3"]
    slow = next(a for a in fanout.answers if a.member.model == "m3")
    assert slow.dropped and slow.error == SETTLED_EARLY
    assert result.rounds[0].saved == 1 and result.consensus.agreement == 1.0
    assert result.wall_s == 2.0 and result.model_s == 5.0  # 1 + 2, and the 2 s m3 generated before its drop


def test_a_repeated_question_comes_from_the_cache_unless_no_cache(store) -> None:
    script = {m: (3.0, "Paris") for m in ("m1", "m2", "m3")}
    ens, gen = ensemble(3, script, cache=QueryCache(store), max_samples_per_model=1, quorum_share=0.0)
    first = run_virtual(ens.ask("Capital   of France?", Tier.EXPERT))
    again = run_virtual(ens.ask("Capital of France?", Tier.EXPERT))  # the same after normalising
    assert first.cached is None and again.cached is not None
    assert again.answer == "Paris" and again.figures()["confidence"] == 1.0 and again.wall_s == 0.0
    assert len(gen.requests) == 3
    fresh = run_virtual(ens.ask("Capital of France?", Tier.EXPERT, use_cache=False))
    assert fresh.cached is None and len(gen.requests) == 6
    other_tier = run_virtual(ens.ask("Capital of France?", Tier.SIMPLE))
    assert other_tier.cached is None


def test_every_member_is_a_run_with_the_consensus_in_its_events(store) -> None:
    script = {"m1": (1.0, "Paris"), "m2": (2.0, "Marseille is the capital"), "m3": (3.0, "paris"),
              "m4": (500.0, "late")}
    ens, _ = ensemble(4, script, store=store, max_samples_per_model=1, quorum_share=0.0)
    result = run_virtual(ens.ask("Capital of France?", Tier.EXPERT))
    runs = {r.model: r for r in store.recent_runs(10)}
    assert {m: (r.outcome, r.domain) for m, r in runs.items()} == {
        "m1": ("success", ASK_DOMAIN), "m2": ("failed", ASK_DOMAIN), "m3": ("success", ASK_DOMAIN),
        "m4": ("failed", ASK_DOMAIN)}
    assert runs["m2"].error_type == "LOGIC" and "outvoted" in runs["m2"].reason
    assert runs["m4"].phase == "GENERATE" and runs["m4"].reason == "timeout after 120 s"
    assert runs["m1"].wall_s == 1.0 and runs["m1"].task.startswith("ensemble-ask-")
    events = {m: {e.kind: e.payload for e in store.events(r.run_id)} for m, r in runs.items()}
    assert all(e["ensemble"]["ensemble"] == result.ensemble_id for e in events.values())
    assert events["m1"]["ensemble"]["chosen"] and events["m3"]["ensemble"]["agreed"]
    assert events["m1"]["consensus"]["answer"] == "Paris" and events["m1"]["consensus"]["confidence"] == 0.667
    assert "consensus" not in events["m3"]


def test_runs_dropped_at_the_early_stop_are_aborted_not_failed(store) -> None:
    script = {"m1": (1.0, "yes"), "m2": (1.0, "yes"), "m3": (50.0, "no")}
    ens, _ = ensemble(3, script, store=store, max_samples_per_model=1, quorum_share=0.5)
    run_virtual(ens.ask("Is it?", Tier.EXPERT))
    outcomes = sorted((r.model, r.outcome, r.reason) for r in store.recent_runs(10))
    assert outcomes == [("m1", "success", "in the consensus (text)"), ("m2", "success", "in the consensus (text)"),
                        ("m3", "aborted", SETTLED_EARLY)]


# -- tasks, with scripted judging ------------------------------------------------------------------


def test_solve_judges_candidates_as_they_come_and_stops_at_the_first_pass(tmp_path, store) -> None:
    judging = ScriptedJudging(tmp_path / "ws")
    script = {"m1": (1.0, "HALF a"), "m2": (3.0, "RIGHT b"), "m3": (90.0, "RIGHT c")}
    ens, gen = ensemble(3, script, store=store, attempts=judging, max_samples_per_model=1)
    result = run_virtual(ens.solve(TASK, Tier.EXPERT))
    r = result.rounds[0]
    assert result.solved and result.answer == "RIGHT b" and result.consensus.method is Method.TESTS
    assert r.fanout.settled_early and r.fanout.wall_s == 3.0 and gen.cancelled == ["m3"]
    assert [(n, m) for n, m, _ in judging.judged] == [(1, "m1"), (2, "m2")]
    stopped = next(a for a in r.fanout.answers if a.member.model == "m3")
    assert stopped.dropped and stopped.error == NOT_NEEDED
    assert judging.retired == [(judging.open_runs[0], True)]
    runs = {x.model: x for x in store.recent_runs(10)}
    assert {m: (x.outcome, x.score_final, x.task) for m, x in runs.items()} == {
        "m1": ("failed", 50.0, "t.add"), "m2": ("success", 100.0, "t.add"), "m3": ("aborted", None, "t.add")}
    assert [e.kind for e in store.events(runs["m2"].run_id)][1:] == ["score", "ensemble", "consensus", "finished"]
    assert result.to_dict()["solved"] is True


def test_solve_without_a_pass_takes_the_best_score(tmp_path) -> None:
    judging = ScriptedJudging(tmp_path / "ws")
    script = {"m1": (1.0, "wrong"), "m2": (2.0, "HALF")}
    ens, _ = ensemble(2, script, attempts=judging, max_samples_per_model=1)
    result = run_virtual(ens.solve(TASK, Tier.EXPERT))
    assert not result.solved and result.chosen.score == 50.0 and result.chosen.model == "m2"
    assert judging.retired[0][1] is False


def test_solve_with_no_answer_at_all_falls_back_and_can_still_solve(tmp_path) -> None:
    judging = ScriptedJudging(tmp_path / "ws")
    script = {"m1": [(1.0, BackendError("down")), (1.0, "RIGHT")], "m2": (1.0, BackendError("down"))}
    ens, gen = ensemble(2, script, attempts=judging, max_samples_per_model=1)
    result = run_virtual(ens.solve(TASK, Tier.MEDIUM))
    assert len(result.rounds) == 2 and result.rounds[1].fanout.tier is Tier.SIMPLE and result.solved
    assert gen.requests[-1].max_tokens == CHAT_MAX_TOKENS // 2
    assert [n for n, _, _ in judging.judged] == [1]
