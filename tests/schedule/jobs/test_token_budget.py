"""token_budget: usage per domain and model against budgets, truncated answers, prompts near the context."""

from __future__ import annotations

from pathlib import Path

import pytest

from kisystem.improve.auto import UNREPLAYED, approve
from kisystem.improve.plans import SetContextTokens, SetMaxTokens
from kisystem.improve.versions import apply_active
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import load_task
from kisystem.schedule.jobs.token_budget import token_budget
from tests.loop.fakes import ScriptedModel
from tests.schedule.jobs.support import CPP, PY, Db, Iter

ADD_TASK = Path(__file__).parents[2] / "loop" / "data" / "loop" / "add.toml"
GOOD = "```python\n# file: solution.py\ndef add(a, b):\n    return a + b\n```"


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


def test_answers_cut_under_an_earlier_smaller_budget_propose_no_larger_one(db):
    for i in range(3):
        db.run(f"t{i}", [cut(), Iter("small")])  # cut at 400
    for i in range(3, 7):
        db.run(f"t{i}", [Iter("small", max_tokens=640)])  # the budget since, never cut
    result = token_budget(db.ctx()).result
    small = result["answers"]["small"]
    assert (small["truncated"], small["max_tokens"], small["asked_at_max_tokens"]) == (3, 640, 4)
    assert small["truncated_at_max_tokens"] == 0 and result["plans"] == []
    db.run("t7", [cut(), cut(), cut()])  # three more cut at 400: still not the current budget
    assert token_budget(db.ctx()).result["plans"] == []
    db.run("t8", [Iter("small", error="LOGIC", completion_tokens=640, max_tokens=640, finish="length")])
    (plan,) = token_budget(db.ctx()).result["plans"]  # 1 of 5 asked with 640 was cut: 20 %
    assert plan["changes"] == [{"kind": "set_max_tokens", "model": "small", "n": 960}]


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


def cut_answers(db: Db) -> int:
    """Six runs, three of them cut at max_tokens: the stored max_tokens plan's id."""
    for i in range(3):
        db.run(f"t{i}", [cut(), Iter("small")])
    for i in range(3, 6):
        db.run(f"t{i}", [Iter("small")])
    (plan,) = token_budget(db.ctx()).result["plans"]
    return plan["id"]


async def test_an_approved_max_tokens_plan_changes_what_the_loop_asks(db, tmp_path):
    plan_id = cut_answers(db)
    with db.versions() as versions:
        outcome = approve(versions, plan_id, db.config, db.inventory, None)  # a person decided; no replay can
        config, inventory = apply_active(db.config, db.inventory, versions)
    assert outcome.plan.status == "applied_kept" and outcome.result.detail == f"approved; {UNREPLAYED}"
    assert inventory.model("small").max_tokens == 640 and inventory.model("big").max_tokens is None

    model = ScriptedModel({"small": [GOOD]})
    sup = Supervisor(config, inventory, model, db.store, AttemptRunner(PhaseRunner(config), tmp_path / "ws"))
    result = await sup.run_task(load_task(ADD_TASK))

    assert result.outcome == "success" and [r.max_tokens for r in model.requests] == [640]
    db.clock.advance(days=1)
    again = token_budget(db.ctx()).result["answers"]["small"]  # the window now holds an answer asked with 640
    assert (again["max_tokens"], again["asked_at_max_tokens"], again["truncated_at_max_tokens"]) == (640, 1, 0)


async def test_an_unapproved_plan_leaves_the_loop_on_its_default(db, tmp_path):
    cut_answers(db)
    with db.versions() as versions:
        config, inventory = apply_active(db.config, db.inventory, versions)
    model = ScriptedModel({"small": [GOOD]})
    sup = Supervisor(config, inventory, model, db.store, AttemptRunner(PhaseRunner(config), tmp_path / "ws"))
    await sup.run_task(load_task(ADD_TASK))
    assert [r.max_tokens for r in model.requests] == [400]


def test_an_approved_num_ctx_plan_is_the_models_context_and_the_next_review_reads_it(db):
    for i in range(4):
        db.run(f"t{i}", [Iter("small", prompt_tokens=1900, completion_tokens=100)])
    (plan,) = token_budget(db.ctx()).result["plans"]
    with db.versions() as versions:
        assert approve(versions, plan["id"], db.config, db.inventory, None).kept
        assert apply_active(db.config, db.inventory, versions)[1].model("small").context_tokens == 4096
    db.clock.advance(days=1)
    again = token_budget(db.ctx()).result
    # 1900 of 4096 is no longer near the context: nothing more is proposed
    assert again["answers"]["small"]["context_tokens"] == 4096 and again["answers"]["small"]["near_context"] == 0
    assert again["plans"] == [] and again["already_proposed"] == []
