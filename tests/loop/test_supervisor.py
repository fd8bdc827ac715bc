"""The loop's logic, with a scripted model and real builds, tests, sandbox and database."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from kisystem.config import OptimizationConfig
from kisystem.errors import BackendCooledDown, BackendUnreachable, ModelNotFound, PromptTooLong
from kisystem.loop.attempt import AttemptRunner
from kisystem.loop.phases import PhaseRunner
from kisystem.loop.supervisor import Supervisor
from kisystem.loop.taskspec import ProfileSpec, load_task
from kisystem.models.inventory import parse_inventory
from kisystem.store.learning import LearningStore
from tests.loop.fakes import ScriptedModel

DATA = Path(__file__).parent / "data" / "loop"
GOOD = "```python\n# file: solution.py\ndef add(a, b):\n    return a + b\n```"
WRONG = "```python\ndef add(a, b):\n    return a - b\n```"
SPEC_FIELDS = ("run_id", "task", "domain", "model", "iter", "score_final", "outcome", "phase", "reason",
               "t_build", "t_test", "t_profile", "ts")

INVENTORY = parse_inventory({
    "endpoints": {"e": {"backend": "openai", "base_url": "http://127.0.0.1:9"}},
    "models": [{"name": n, "rank": i, "timeout_s": 30, "endpoint": "e", "mode": "chat"}
               for i, n in enumerate(("small", "medium", "large"), 1)],
    "routes": {"Python/General": {"start": "small", "escalation": ["medium", "large"]}},
}, "test inventory")


@pytest.fixture
def store(tmp_path):
    with LearningStore.open(tmp_path / "learning.db") as s:
        yield s


def make(tmp_path, store, script, **config):
    cfg = replace(OptimizationConfig(), **config)
    model = ScriptedModel(script)
    attempts = AttemptRunner(PhaseRunner(cfg), tmp_path / "ws")
    return Supervisor(cfg, INVENTORY, model, store, attempts), model


@pytest.fixture
def task():
    return load_task(DATA / "add.toml")


async def test_first_answer_right_is_one_successful_record(tmp_path, store, task):
    sup, model = make(tmp_path, store, {"small": [GOOD]})
    result = await sup.run_task(task)
    assert (result.outcome, result.iterations, result.score) == ("success", 1, 100.0)
    row = store.get_run(result.run_id)
    for name in SPEC_FIELDS:
        assert hasattr(row, name), name
    assert (row.outcome, row.model, row.iter, row.score_final, row.domain) == ("success", "small", 1, 100.0, "Python/General")
    assert row.t_test > 0 and row.ts
    kinds = [e.kind for e in store.events(result.run_id)]
    assert kinds[0] == "started" and kinds[1] == "start" and "test" in kinds and kinds[-1] == "finished"
    [code] = [e.payload for e in store.events(result.run_id) if e.kind == "code"]  # kept for the security scan
    assert (code["language"], code["file"], code["iteration"]) == ("python", task.solution_file, 1)
    assert "def add" in code["code"] and "```" not in code["code"]


async def test_stoploss_escalates_after_two_fails_and_feeds_the_error_back(tmp_path, store, task):
    sup, model = make(tmp_path, store, {"small": [WRONG, WRONG], "medium": [GOOD]}, repair_logic_errors=True)
    result = await sup.run_task(task)
    assert result.outcome == "success" and result.iterations == 3
    assert result.models_tried == ("small", "medium")
    fix_prompt = model.requests[1].messages[-1]["content"]
    assert "failed in the TEST phase" in fix_prompt and "return a - b" in fix_prompt
    first_prompt = model.requests[0].messages[-1]["content"]
    assert fix_prompt.startswith(first_prompt.split("Write the solution")[0])  # the task, then the failure
    assert model.requests[1].temperature > 0  # a retry samples, so it is not the same answer
    assert model.requests[2].messages[-1]["content"].startswith("Task add")  # fresh start on escalation


async def test_every_model_failing_ends_exhausted_with_a_record(tmp_path, store, task):
    sup, _ = make(tmp_path, store, {m: [WRONG, WRONG] for m in ("small", "medium", "large")})
    result = await sup.run_task(task)
    assert result.outcome == "exhausted" and result.iterations == 6
    row = store.get_run(result.run_id)
    assert row.outcome == "exhausted" and row.phase == "TEST" and row.error_type
    assert 0 <= row.score_final < 100


async def test_an_answer_that_edits_the_test_file_does_not_change_the_test(tmp_path, store, task):
    cheat = ("```python\n# file: test_add.py\nprint('KISYSTEM_TESTS passed=3 total=3')\n```\n"
             "```python\n# file: solution.py\ndef add(a, b):\n    return 0\n```")
    sup, _ = make(tmp_path, store, {"small": [cheat]}, stoploss_per_model=1, max_optimization_iterations=1)
    result = await sup.run_task(task)
    assert result.outcome != "success" and result.score < 100
    test_file = next((tmp_path / "ws").rglob("test_add.py"))
    assert test_file.read_text() == task.fixed["test_add.py"]


async def test_same_error_three_times_escalates_before_the_stoploss(tmp_path, store, task):
    sup, _ = make(tmp_path, store, {"small": [WRONG] * 3, "medium": [GOOD]}, stoploss_per_model=5)
    result = await sup.run_task(task)
    assert result.models_tried == ("small", "medium") and result.iterations == 4


async def test_unrecoverable_error_aborts_with_its_reason(tmp_path, store, task):
    no_gpu = ("```python\nimport sys\nprint('CUDA error: no CUDA-capable device is detected')\n"
              "sys.exit(1)\n```")
    sup, _ = make(tmp_path, store, {"small": [no_gpu]})
    result = await sup.run_task(task)
    assert result.outcome == "aborted" and result.iterations == 1
    assert store.get_run(result.run_id).reason


async def test_model_missing_on_the_backend_is_skipped(tmp_path, store, task):
    sup, _ = make(tmp_path, store, {"small": [ModelNotFound("small", "http://x")], "medium": [GOOD]})
    result = await sup.run_task(task)
    assert result.outcome == "success" and result.models_tried == ("small", "medium")


async def test_iteration_budget_ends_failed(tmp_path, store, task):
    sup, _ = make(tmp_path, store, {"small": [WRONG] * 2}, max_optimization_iterations=2, stoploss_per_model=5)
    result = await sup.run_task(task)
    assert result.outcome == "failed" and result.iterations == 2


async def test_passing_but_slow_code_gets_an_optimize_prompt(tmp_path, store, task):
    slow = replace(task, profile=ProfileSpec("python -c 'import time; time.sleep(0.3)'", 20, reference_time_s=0.05),
                   target_score=95)
    sup, model = make(tmp_path, store, {"small": [GOOD, GOOD]}, max_optimization_iterations=2)
    result = await sup.run_task(slow)
    assert result.outcome == "failed" and 80 <= result.score < 95
    assert "Make it faster" in model.requests[1].messages[-1]["content"]


async def test_a_crash_mid_run_still_leaves_a_record(tmp_path, store, task):
    sup, _ = make(tmp_path, store, {"small": [RuntimeError("boom")]})
    with pytest.raises(RuntimeError):
        await sup.run_task(task)
    (row,) = store.recent_runs(5)
    assert row.outcome == "error" and "boom" in row.reason


class StartOn:
    name = "fixed"

    def __init__(self, model):
        self.model = model

    def start_model(self, task, chain):
        return self.model


class FloorAt:
    def __init__(self, index):
        self.index = index

    def floor(self, task, chain, index, retry, error_type):
        return max(index, self.index)


async def test_a_policy_overrides_the_start_model_and_is_logged(tmp_path, store, task):
    sup, model = make(tmp_path, store, {"medium": [GOOD]})
    sup.policy = StartOn("medium")
    sup.hot_domains = lambda: ["Python/General"]
    result = await sup.run_task(task)
    assert result.models_tried == ("medium",) and result.solved
    events = {e.kind: e.payload for e in store.events(result.run_id)}
    assert events["bias"]["model"] == "medium" and events["bias"]["replaces"] == "small"
    assert events["priority"]["domain"] == "Python/General"


async def test_an_explicit_model_beats_the_policy(tmp_path, store, task):
    sup, _ = make(tmp_path, store, {"large": [GOOD]})
    sup.policy = StartOn("medium")
    result = await sup.run_task(task, start_model="large")
    assert result.models_tried == ("large",)
    assert "bias" not in {e.kind for e in store.events(result.run_id)}


async def test_the_capability_floor_lifts_a_failing_task_before_its_stoploss(tmp_path, store, task):
    sup, _ = make(tmp_path, store, {"small": [WRONG], "large": [GOOD]}, stoploss_per_model=5)
    sup.floor = FloorAt(2)
    result = await sup.run_task(task)
    assert result.models_tried == ("small", "large") and result.iterations == 2


def test_a_repair_and_a_fresh_sample_use_their_own_temperatures(tmp_path, task):
    from kisystem.loop.prompts import Feedback

    runner = AttemptRunner(PhaseRunner(OptimizationConfig()), tmp_path, temperatures=(0.7, 0.3))
    first = runner.request_for(task, "small", "chat", None, 0)
    fresh = runner.request_for(task, "small", "chat", None, 2)
    repair = runner.request_for(task, "small", "chat", Feedback("def add(a, b): return 0", phase="TEST"), 2)
    assert (first.temperature, first.seed) == (0.0, None)  # the first try is greedy
    assert (fresh.temperature, fresh.seed) == (0.7, 2) and (repair.temperature, repair.seed) == (0.3, 2)


def with_max_tokens(model: str, n: int):
    """INVENTORY with ``model``'s own answer budget, as the inventory file or an active version sets it."""
    return replace(INVENTORY, models={**INVENTORY.models, model: replace(INVENTORY.models[model], max_tokens=n)})


def test_a_request_asks_for_the_models_own_answer_budget_else_the_modes_default(tmp_path, task):
    from kisystem.loop.attempt import CHAT_MAX_TOKENS, COMPLETION_MAX_TOKENS

    runner = AttemptRunner(PhaseRunner(OptimizationConfig()), tmp_path)
    assert runner.request_for(task, "small", "chat", None, 0).max_tokens == CHAT_MAX_TOKENS == 400
    assert runner.request_for(task, "small", "completion", None, 0).max_tokens == COMPLETION_MAX_TOKENS == 256
    assert runner.request_for(task, "small", "chat", None, 1, max_tokens=900).max_tokens == 900
    assert runner.request_for(task, "small", "completion", None, 0, max_tokens=900).max_tokens == 900


async def test_the_loop_asks_each_model_for_its_own_max_tokens_on_every_try(tmp_path, store, task):
    sup, model = make(tmp_path, store, {"small": [WRONG, WRONG], "medium": [GOOD]}, repair_logic_errors=True)
    sup.inventory = with_max_tokens("small", 900)
    result = await sup.run_task(task)
    assert result.models_tried == ("small", "medium")
    assert [(r.model, r.max_tokens) for r in model.requests] == [("small", 900), ("small", 900), ("medium", 400)]
    answers = [e.payload for e in store.events(result.run_id) if e.kind == "answer"]
    assert [a["max_tokens"] for a in answers] == [900, 900, 400]  # what token_budget reads back


async def test_a_trimmed_retry_keeps_the_models_max_tokens(tmp_path, store, task):
    long_crash = "```python\ndef add(a, b):\n    return a + b\n" + "x = 1\n" * 2000 + "raise RuntimeError('boom')\n```"
    model = ContextLimited({"small": [long_crash, GOOD]}, limit=6000)
    sup, _ = make(tmp_path, store, {}, stoploss_per_model=5)
    sup.inventory = with_max_tokens("small", 700)
    sup.generator = model
    result = await sup.run_task(task)
    assert result.outcome == "success"
    assert [e.kind for e in store.events(result.run_id)].count("trim") >= 1
    assert {r.max_tokens for r in model.requests} == {700}  # the first, the refused and the trimmed one


async def test_an_answer_cut_off_at_the_token_limit_is_salvaged_or_says_so(tmp_path, store, task):
    class CutOff(ScriptedModel):
        async def generate(self, request, on_text=None):
            generation = await super().generate(request, on_text)
            generation.finish_reason = "length"
            return generation

    example = "```python\ndef add(a, b):\n    return a + b\n\nprint(add(1, 2)  # Out"
    sup = Supervisor(OptimizationConfig(), INVENTORY, CutOff({"small": [example]}), store,
                     AttemptRunner(PhaseRunner(OptimizationConfig()), tmp_path / "ws"))
    assert (await sup.run_task(task)).outcome == "success"  # the cut-off example is trimmed away

    model = CutOff({"small": ["```python\ndef add(a, b):\n    return (a +", GOOD]})
    sup = Supervisor(OptimizationConfig(), INVENTORY, model, store,
                     AttemptRunner(PhaseRunner(OptimizationConfig()), tmp_path / "ws2"))
    assert (await sup.run_task(task)).outcome == "success"
    assert "cut off at 400 tokens" in model.requests[1].messages[-1]["content"]


async def test_a_wrong_answer_gets_a_fresh_sample_and_a_crash_a_repair(tmp_path, store, task):
    crash = "```python\ndef add(a, b):\n    return a + undefined_name\n```"
    sup, model = make(tmp_path, store, {"small": [WRONG, crash, GOOD]}, stoploss_per_model=3)
    result = await sup.run_task(task)
    assert result.outcome == "success" and result.iterations == 3
    first, fresh, repair = model.requests
    assert fresh.messages == first.messages and (fresh.temperature, fresh.seed) == (0.8, 1)  # LOGIC: resampled
    assert "failed in the TEST phase" in repair.messages[-1]["content"]  # RUNTIME: repaired with feedback


async def test_an_escalation_with_no_iteration_left_is_not_a_model_tried(tmp_path, store, task):
    sup, _ = make(tmp_path, store, {"small": [WRONG, WRONG]}, max_optimization_iterations=2)
    result = await sup.run_task(task)
    assert result.outcome == "failed" and result.models_tried == ("small",) and result.model == "small"
    assert store.get_run(result.run_id).model == "small"


# --- backends that fail, prompts that do not fit ---------------------------------------------


class ContextLimited(ScriptedModel):
    """A scripted model whose context holds ``limit`` characters of user prompt, as a
    ModelClient that measured the prompt would refuse it unsent."""

    def __init__(self, script, limit: int) -> None:
        super().__init__(script)
        self.limit = limit

    async def generate(self, request, on_text=None):
        size = len(request.messages[-1]["content"])
        if size > self.limit:
            self.requests.append(request)
            raise PromptTooLong(request.model, size, self.limit)
        return await super().generate(request, on_text)


async def test_a_fix_prompt_too_long_for_the_context_is_trimmed_and_sent(tmp_path, store, task):
    long_crash = "```python\ndef add(a, b):\n    return a + b\n" + "x = 1\n" * 2000 + "raise RuntimeError('boom')\n```"
    model = ContextLimited({"small": [long_crash, GOOD]}, limit=6000)
    sup, _ = make(tmp_path, store, {}, stoploss_per_model=5)
    sup.generator = model
    result = await sup.run_task(task)
    assert result.outcome == "success" and result.models_tried == ("small",)
    sent = model.requests[-1].messages[-1]["content"]
    assert len(sent) <= 6000 and "characters cut to fit the model's context" in sent
    assert [e.kind for e in store.events(result.run_id)].count("trim") >= 1


async def test_a_task_too_long_for_every_context_ends_naming_the_sizes(tmp_path, store, task):
    huge = replace(task, prompt="Add two numbers. " * 5000)
    sup, _ = make(tmp_path, store, {})
    sup.generator = ContextLimited({}, limit=4000)
    result = await sup.run_task(huge)
    assert result.outcome == "exhausted" and "does not fit large's context of 4000 tokens" in result.reason
    skips = [e.payload["reason"] for e in store.events(result.run_id) if e.kind == "skip"]
    assert len(skips) == 3 and all("does not fit" in r and "context of 4000 tokens" in r for r in skips)


async def test_a_cooled_down_backend_is_skipped_with_its_reason(tmp_path, store, task):
    cooled = BackendCooledDown("endpoint 'e' is cooling down for 50 s more")
    sup, _ = make(tmp_path, store, {"small": [cooled], "medium": [GOOD]})
    result = await sup.run_task(task)
    assert result.outcome == "success" and result.models_tried == ("small", "medium")
    skip = next(e for e in store.events(result.run_id) if e.kind == "skip")
    assert "cooling down" in skip.payload["reason"]


async def test_a_backend_down_for_every_model_is_an_error_not_a_hopeless_task(tmp_path, store, task):
    down = {m: [BackendUnreachable(f"{m}: cannot connect")] for m in ("small", "medium", "large")}
    sup, _ = make(tmp_path, store, down)
    with pytest.raises(BackendUnreachable):
        await sup.run_task(task)
    (row,) = store.recent_runs()
    assert row.outcome == "error" and "cannot connect" in row.reason


def test_priority_domains_are_named_only_when_the_record_has_more_domains_than_the_top():
    from kisystem.loop.session import _top_domains

    class Meta:
        def __init__(self, domains):
            self.domains = domains

        def next_priorities(self, top_n):
            return [(d, 1.0) for d in self.domains][:top_n]

    assert _top_domains(Meta(["a", "b", "c"]), 3) == []  # every domain is "top 3": nothing to say
    assert _top_domains(Meta(["a", "b", "c", "d"]), 3) == ["a", "b", "c"]


async def test_lessons_from_earlier_runs_go_into_fix_prompts_only(tmp_path, store, task):
    crash = "```python\ndef add(a, b):\n    raise RuntimeError('boom')\n```"
    sup, model = make(tmp_path, store, {"small": [crash, GOOD]}, stoploss_per_model=5)
    asked: list[tuple[str, str]] = []
    sup.lessons = lambda domain, m: asked.append((domain, m)) or "Lessons from earlier runs:\n- small: check types"
    result = await sup.run_task(task)
    assert result.outcome == "success" and asked == [("Python/General", "small")]
    first, fix = (r.messages[-1]["content"] for r in model.requests)
    assert "Lessons from earlier runs" not in first
    assert "Hint:" in fix and "\n\nLessons from earlier runs:\n- small: check types\n\nFind the mistake" in fix


def test_without_lessons_the_fix_prompt_is_unchanged():
    from kisystem.loop import prompts

    spec = load_task(DATA / "add.toml")
    plain = prompts.chat_messages(spec, prompts.Feedback("x = 1", "TEST", "LOGIC", "assert 1 == 2", "check it"))
    assert "Hint: check it\n\nFind the mistake" in plain[-1]["content"]  # the prompt as before lessons existed
