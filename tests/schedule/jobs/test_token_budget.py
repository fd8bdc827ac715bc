"""token_budget: usage per domain and model against budgets, truncated answers, prompts near the context."""

from __future__ import annotations

import pytest

from kisystem.schedule.jobs.changes import SetContextTokens, SetMaxTokens
from kisystem.schedule.jobs.token_budget import token_budget
from tests.schedule.jobs.support import CPP, PY, Db, Iter


@pytest.fixture
def db(tmp_path):
    db = Db(tmp_path / "home")
    yield db
    db.close()


def cut(model: str = "small", error: str | None = "LOGIC") -> Iter:
    """An answer cut at its 400-token limit."""
    return Iter(model, error=error, gen_s=20.0, completion_tokens=400, finish="length")


def test_tokens_and_model_seconds_per_domain_and_model_against_the_budgets(db):
    db.jobs(domain_token_budget=2000, model_seconds_budget=50.0)
    db.run("p1", [Iter("small", "LOGIC"), Iter("small")])  # 2 x (300 + 150) tokens, 2 x 10 s
    db.run("p2", [Iter("small", "LOGIC"), Iter("small", "LOGIC"), Iter("big")], outcome="success")
    db.run("c1", [Iter("big", gen_s=30.0, prompt_tokens=1000, completion_tokens=500)], domain=CPP)

    result = token_budget(db.ctx())

    assert result.status == "success"
    r = result.result
    assert r["runs"] == 3 and r["generations"] == 6
    assert r["by_domain"][PY]["tokens"] == 5 * 450 and r["by_domain"][PY]["model_seconds"] == 50.0
    assert r["by_domain"][CPP] == {"runs": 1, "generations": 1, "tokens_prompt": 1000, "tokens_completion": 500,
                                   "tokens": 1500, "model_seconds": 30.0}
    assert r["by_model"]["small"]["tokens"] == 4 * 450 and r["by_model"]["small"]["model_seconds"] == 40.0
    assert r["by_model"]["big"]["model_seconds"] == 40.0
    # Python/General used 2250 tokens of a 2000-token budget; no model used more than 50 s
    assert r["over_budget"] == [{"domain": PY, "what": "tokens", "used": 2250, "budget": 2000, "share": 1.125}]
    assert r["plans"] == []  # nothing was cut, no prompt came near a context


def test_a_model_whose_answers_are_cut_gets_a_larger_max_tokens_plan_for_approval(db):
    for i in range(3):
        db.run(f"t{i}", [cut(), Iter("small")])  # cut and failed, then solved
    for i in range(3, 6):
        db.run(f"t{i}", [Iter("small")])

    result = token_budget(db.ctx()).result

    small = result["answers"]["small"]
    assert (small["generations"], small["truncated"], small["truncated_and_failed"]) == (9, 3, 3)
    assert small["truncation_share"] == pytest.approx(3 / 9, abs=1e-4) and small["max_tokens"] == 400
    (plan,) = result["plans"]
    assert (plan["status"], plan["opportunity"], plan["agent"]) == ("awaiting_approval", "quality_issues", "small")
    assert plan["changes"] == [{"kind": "set_max_tokens", "model": "small", "n": 640}]  # 400 x 1.5, up to 64s
    with db.versions() as versions:  # stored, and it reads back with its change type
        stored = versions.plan(plan["id"])
    assert stored.changes == (SetMaxTokens("small", 640),) and stored.status == "awaiting_approval"


def test_prompts_near_the_context_propose_a_larger_num_ctx(db):
    for i in range(4):  # 1900 of small's 2048 tokens: over 0.85 of it
        db.run(f"t{i}", [Iter("small", prompt_tokens=1900, completion_tokens=100)])
    db.run("t4", [Iter("small")], events=[(1, "trim", {"tokens": 2300, "context": 2048, "keep": 0.6})])
    db.run("t5", [Iter("big", prompt_tokens=1900)])  # far from big's 8192

    result = token_budget(db.ctx()).result

    assert result["answers"]["small"]["near_context"] == 4 and result["answers"]["small"]["trims"] == 1
    assert result["answers"]["big"]["near_context"] == 0
    (plan,) = result["plans"]
    # the largest prompt (1900) and the answer budget (400), x 1.25, as a power of two
    assert plan["changes"] == [{"kind": "set_num_ctx", "model": "small", "n": 4096}]
    assert plan["opportunity"] == "resource_inefficiency"
    with db.versions() as versions:
        assert versions.plan(plan["id"]).changes == (SetContextTokens("small", 4096),)


def test_a_plan_already_proposed_in_the_window_is_not_proposed_again(db):
    for i in range(4):
        db.run(f"t{i}", [cut(error=None)])
    first = token_budget(db.ctx()).result
    db.clock.advance(days=1)
    again = token_budget(db.ctx()).result
    assert len(first["plans"]) == 1 and again["plans"] == []
    assert again["already_proposed"] == ["max_tokens of small: 640"]
    with db.versions() as versions:
        assert len(versions.plans()) == 1


def test_too_few_answers_propose_nothing(db):
    db.run("t0", [cut(), cut()])  # 2 answers, both cut: under health.min_samples (3)
    result = token_budget(db.ctx()).result
    assert result["answers"]["small"]["truncated"] == 2 and result["plans"] == []


def test_no_runs_in_the_window_is_skipped_with_the_reason(db):
    db.run("old", [Iter("small")])
    db.clock.advance(days=31)
    result = token_budget(db.ctx())
    assert result.status == "skipped"
    assert result.reason == "no finished runs in the last 30 days"
