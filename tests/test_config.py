"""OptimizationConfig: defaults, the guide's file, validation problems, env overrides."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from kisystem.config import (
    KEYS,
    OptimizationConfig,
    Timeouts,
    config_path_for,
    default_json,
    env_name,
    load_config,
)
from kisystem.errors import ConfigError
from kisystem.paths import Paths

SPEC_DEFAULTS = {
    "max_optimization_iterations": 10,
    "target_score": 80,
    "retry_build": 2,
    "retry_test": 1,
    "retry_profile": 1,
    "stoploss_per_model": 2,
    "max_concurrent_builds": 3,
    "max_concurrent_generations": 0,
    "enable_meta_supervisor": True,
    "enable_two_tier_profiling": True,
    "enable_async_io": True,
    "meta_supervisor_weights": {"failure_weight": 0.5, "time_weight": 0.2, "count_weight": 0.2, "recency_weight": 0.1},
    "hybrid_decision_weights": {"meta_bias": 0.40, "complexity": 0.30, "failure_state": 0.30},
    "two_tier_profiling": {"score_change_threshold": 5, "max_tier0_streak": 5},
    "timeouts": {"build": 300, "test": 120, "profile": 900},
    "model_profile": "embedded",
    "inventory_file": None,
    "routing_policy": "spec",
    "sandbox_min_level": "none",
    "keep_workspaces": False,
    "keep_failed_workspaces": 5,
    "sample_temperature": 0.8,
    "repair_temperature": 0.8,
    "repair_logic_errors": False,
    "first_token_timeout_s": 30,
    "backend_failures_before_cooldown": 2,
    "backend_cooldown_s": 60,
    "static_analysis": True,
    "lessons_in_prompts": True,
    "enable_scheduled_jobs": False,
    "feedback": {"pattern_min_frequency": 3, "pattern_min_confidence": 0.6, "pattern_lookback_days": 7,
                 "quality_threshold": 0.8, "performance_threshold": 0.5},
    "health": {"lookback_days": 7, "sla_fraction": 0.5, "unmeasured_quality": 0.8, "trend_points": 5.0,
               "trend_history": 5, "min_samples": 3, "decline_points": 5.0, "smell_share": 0.5,
               "security_min": 0.75, "gap_share": 0.5, "memory_mb": 500, "cpu_percent": 80.0},
    "jobs": {"budget_window_days": 30, "domain_token_budget": 0, "domain_model_seconds_budget": 0.0,
             "model_token_budget": 0, "model_seconds_budget": 0.0, "truncation_share": 0.1, "context_share": 0.85,
             "near_context_share": 0.1, "formula_history_days": 90, "formula_min_runs": 30,
             "profile_stale_points": 10.0, "smoke_problems": 3, "health_start_embedded": False,
             "security_window_days": 30, "security_max_answers": 200, "pip_audit": True, "pip_audit_timeout_s": 180,
             "improvement_strategy": "auto", "proposal_cooldown_hours": 24.0},
    "ensemble": {"simple_members": 3, "medium_members": 5, "complex_members": 8, "expert_members": 12,
                 "simple_timeout_s": 30, "medium_timeout_s": 45, "complex_timeout_s": 90, "expert_timeout_s": 120,
                 "max_samples_per_model": 3, "sample_temperature": 0.8, "greedy_first_sample": True,
                 "max_concurrent_per_endpoint": 2, "server_slots": 0, "cache": True, "cache_max_entries": 1000,
                 "quorum_share": 0.5, "fallback_max_tokens_share": 0.5, "ask_max_tokens": 0, "in_loop": "off",
                 "in_loop_tier": "complex"},
}

# Verbatim from the Phase 7 guide, section 7.
GUIDE_JSON = """
{
  "max_optimization_iterations": 10,
  "target_score": 80,

  "retry_build": 2,
  "retry_test": 1,
  "retry_profile": 1,

  "stoploss_per_model": 2,
  "max_concurrent_builds": 3,

  "enable_meta_supervisor": true,
  "enable_two_tier_profiling": true,
  "enable_async_io": true,

  "meta_supervisor_weights": {
    "failure_weight": 0.5,
    "time_weight": 0.2,
    "count_weight": 0.2,
    "recency_weight": 0.1
  },

  "hybrid_decision_weights": {
    "meta_bias": 0.40,
    "complexity": 0.30,
    "failure_state": 0.30
  },

  "two_tier_profiling": {
    "score_change_threshold": 5,
    "max_tier0_streak": 5
  },

  "timeouts": {
    "build": 300,
    "test": 120,
    "profile": 900
  }
}
"""


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "optimization_config.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def problems_for(tmp_path: Path, data: Any, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data), env=env or {})
    return info.value.problems


# --- defaults and the file format ---------------------------------------------------


def test_defaults_equal_the_spec() -> None:
    assert OptimizationConfig().to_dict() == SPEC_DEFAULTS


def test_defaults_only_when_no_file() -> None:
    loaded = load_config(None, env={})
    assert loaded.config == OptimizationConfig()
    assert set(loaded.sources) == set(KEYS)
    assert set(loaded.sources.values()) == {"default"}


def test_guide_json_loads(tmp_path: Path) -> None:
    path = write(tmp_path, GUIDE_JSON)
    config = OptimizationConfig.load(path)
    assert config.max_optimization_iterations == 10
    assert config.stoploss_per_model == 2
    assert config.enable_meta_supervisor is True
    assert config.hybrid_decision_weights.meta_bias == 0.40
    loaded = load_config(path, env={})
    assert loaded.sources["timeouts.profile"] == f"file:{path}"
    assert loaded.sources["model_profile"] == "default"  # not in the guide's file


def test_partial_file_keeps_other_defaults(tmp_path: Path) -> None:
    config = OptimizationConfig.load(write(tmp_path, {"target_score": 90, "timeouts": {"build": 600}}))
    assert config.target_score == 90
    assert config.timeouts == Timeouts(build=600, test=120, profile=900)
    assert config.retry_build == 2


def test_float_key_accepts_json_int_as_float(tmp_path: Path) -> None:
    config = OptimizationConfig.load(write(tmp_path, {"two_tier_profiling": {"score_change_threshold": 7}}))
    value = config.two_tier_profiling.score_change_threshold
    assert value == 7.0 and isinstance(value, float)


def test_kisystem_keys_load(tmp_path: Path) -> None:
    config = OptimizationConfig.load(write(tmp_path, {"model_profile": "ollama", "inventory_file": "~/inv.toml"}))
    assert (config.model_profile, config.inventory_file) == ("ollama", "~/inv.toml")


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        OptimizationConfig().target_score = 1  # type: ignore[misc]


def test_default_json_round_trips(tmp_path: Path) -> None:
    assert OptimizationConfig.load(write(tmp_path, default_json())) == OptimizationConfig()


def test_from_dict_validates() -> None:
    assert OptimizationConfig.from_dict({"retry_test": 3}).retry_test == 3
    with pytest.raises(ConfigError) as info:
        OptimizationConfig.from_dict({"retry_test": 6})
    assert info.value.problems == ["retry_test: 6 is out of range (allowed: int 0..5)"]


# --- problems -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"target_score": 150}, "target_score: 150 is out of range (allowed: int 0..100)"),
        ({"max_optimization_iterations": 0}, "max_optimization_iterations: 0 is out of range (allowed: int 1..50)"),
        ({"max_optimization_iterations": 51}, "max_optimization_iterations: 51 is out of range (allowed: int 1..50)"),
        ({"retry_profile": -1}, "retry_profile: -1 is out of range (allowed: int 0..5)"),
        ({"stoploss_per_model": 6}, "stoploss_per_model: 6 is out of range (allowed: int 1..5)"),
        ({"max_concurrent_builds": 9}, "max_concurrent_builds: 9 is out of range (allowed: int 1..8)"),
        ({"timeouts": {"profile": 14401}}, "timeouts.profile: 14401 is out of range (allowed: int 1..14400)"),
        ({"timeouts": {"test": 0}}, "timeouts.test: 0 is out of range (allowed: int 1..7200)"),
        (
            {"two_tier_profiling": {"score_change_threshold": 100.5}},
            "two_tier_profiling.score_change_threshold: 100.5 is out of range (allowed: float 0..100)",
        ),
        (
            {"two_tier_profiling": {"max_tier0_streak": 101}},
            "two_tier_profiling.max_tier0_streak: 101 is out of range (allowed: int 1..100)",
        ),
    ],
)
def test_range_problem(tmp_path: Path, data: dict, line: str) -> None:
    assert problems_for(tmp_path, data) == [line]


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"target_score": "80"}, 'target_score: "80" is not an int (allowed: int 0..100)'),
        ({"timeouts": {"build": True}}, "timeouts.build: true is not an int (allowed: int 1..7200)"),
        ({"retry_build": 2.5}, "retry_build: 2.5 is not an int (allowed: int 0..5)"),
        ({"retry_build": None}, "retry_build: null is not an int (allowed: int 0..5)"),
        ({"enable_async_io": 1}, "enable_async_io: 1 is not a bool (allowed: bool)"),
        ({"enable_meta_supervisor": "yes"}, 'enable_meta_supervisor: "yes" is not a bool (allowed: bool)'),
        ({"model_profile": "cloud"}, 'model_profile: "cloud" is not an allowed value (allowed: "embedded" | "ollama")'),
        ({"inventory_file": 3}, "inventory_file: 3 is not a string (allowed: string | null)"),
        (
            {"two_tier_profiling": {"score_change_threshold": False}},
            "two_tier_profiling.score_change_threshold: false is not a float (allowed: float 0..100)",
        ),
        (
            {"timeouts": 300},
            "timeouts: 300 is not an object (allowed: object with keys build, test, profile)",
        ),
    ],
)
def test_type_problem(tmp_path: Path, data: dict, line: str) -> None:
    assert problems_for(tmp_path, data) == [line]


def test_nan_is_not_a_float(tmp_path: Path) -> None:
    # Python's json accepts NaN, and NaN passes every range comparison.
    problems = problems_for(tmp_path, '{"meta_supervisor_weights": {"time_weight": NaN}}')
    assert problems == ["meta_supervisor_weights.time_weight: NaN is not a float (allowed: float 0..1)"]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    assert problems_for(tmp_path, {"target_scor": 80}) == ["target_scor: unknown key (did you mean target_score?)"]


def test_unknown_nested_key(tmp_path: Path) -> None:
    assert problems_for(tmp_path, {"timeouts": {"link": 30}}) == ["timeouts.link: unknown key"]


def test_meta_weights_must_sum_to_one(tmp_path: Path) -> None:
    problems = problems_for(tmp_path, {"meta_supervisor_weights": {"failure_weight": 0.6}})
    assert problems == [
        "meta_supervisor_weights: failure_weight + time_weight + count_weight + recency_weight = 1.1,"
        " must sum to 1 (within 1e-06)"
    ]


def test_hybrid_weights_must_sum_to_one(tmp_path: Path) -> None:
    problems = problems_for(tmp_path, {"hybrid_decision_weights": {"meta_bias": 0.3}})
    assert len(problems) == 1
    assert problems[0].startswith("hybrid_decision_weights: meta_bias + complexity + failure_state = 0.9,")


def test_weights_summing_to_one_within_tolerance(tmp_path: Path) -> None:
    data = {"hybrid_decision_weights": {"meta_bias": 0.5, "complexity": 0.25, "failure_state": 0.2500000001}}
    assert OptimizationConfig.load(write(tmp_path, data)).hybrid_decision_weights.failure_state == 0.2500000001


def test_bad_json_names_the_position(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "target_score": 80,\n}')
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [
        f"{path}: invalid JSON at line 3 column 1: Expecting property name enclosed in double quotes"
    ]


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    assert info.value.problems == [f"{path}: file not found"]


def test_top_level_must_be_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, "[1, 2]")
    assert problems_for(tmp_path, "[1, 2]") == [f"{path}: top level must be a JSON object, got [1, 2]"]


def test_duplicate_key_is_a_problem(tmp_path: Path) -> None:
    text = '{"target_score": 80, "target_score": 90}'
    path = write(tmp_path, text)
    assert problems_for(tmp_path, text) == [f'{path}: duplicate key "target_score"']


def test_all_problems_reported_together(tmp_path: Path) -> None:
    data = {
        "target_score": 150,
        "retry_test": "one",
        "surprise": True,
        "timeouts": {"build": 0, "extra": 1},
        "hybrid_decision_weights": {"meta_bias": 0.9},
    }
    problems = problems_for(tmp_path, data, env={"KISYSTEM_STOPLOSS_PER_MODEL": "9"})
    keys = [line.split(":", 1)[0] for line in problems]
    assert keys == [
        "target_score",
        "retry_test",
        "surprise",
        "timeouts.build",
        "timeouts.extra",
        "stoploss_per_model",
        "hybrid_decision_weights",
    ]


def test_sum_check_skipped_when_a_weight_is_itself_invalid(tmp_path: Path) -> None:
    problems = problems_for(tmp_path, {"meta_supervisor_weights": {"failure_weight": 2}})
    assert problems == ["meta_supervisor_weights.failure_weight: 2 is out of range (allowed: float 0..1)"]


def test_config_error_message_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, {"target_score": -1})
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path, env={})


# --- environment overrides ----------------------------------------------------------


def test_env_names() -> None:
    assert env_name("target_score") == "KISYSTEM_TARGET_SCORE"
    assert env_name("timeouts.build") == "KISYSTEM_TIMEOUTS__BUILD"


def test_env_beats_file_beats_default(tmp_path: Path) -> None:
    path = write(tmp_path, {"target_score": 85, "timeouts": {"build": 400, "test": 200}})
    env = {"KISYSTEM_TARGET_SCORE": "90", "KISYSTEM_TIMEOUTS__BUILD": "600"}
    loaded = load_config(path, env=env)
    assert loaded.config.target_score == 90
    assert loaded.config.timeouts == Timeouts(build=600, test=200, profile=900)
    assert loaded.sources["target_score"] == "env:KISYSTEM_TARGET_SCORE"
    assert loaded.sources["timeouts.build"] == "env:KISYSTEM_TIMEOUTS__BUILD"
    assert loaded.sources["timeouts.test"] == f"file:{path}"
    assert loaded.sources["timeouts.profile"] == "default"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("true", True), ("False", False), ("1", True), ("0", False), ("yes", True), ("NO", False)],
)
def test_env_bools(text: str, expected: bool) -> None:
    assert load_config(None, env={"KISYSTEM_ENABLE_ASYNC_IO": text}).config.enable_async_io is expected


def test_env_float_and_str_and_null() -> None:
    env = {
        "KISYSTEM_TWO_TIER_PROFILING__SCORE_CHANGE_THRESHOLD": "2.5",
        "KISYSTEM_MODEL_PROFILE": "ollama",
        "KISYSTEM_INVENTORY_FILE": "",
    }
    config = load_config(None, env=env).config
    assert config.two_tier_profiling.score_change_threshold == 2.5
    assert config.model_profile == "ollama"
    assert config.inventory_file is None


@pytest.mark.parametrize(
    ("name", "text", "line"),
    [
        (
            "KISYSTEM_TARGET_SCORE",
            "high",
            'target_score: "high" is not an int (allowed: int 0..100) [from KISYSTEM_TARGET_SCORE]',
        ),
        (
            "KISYSTEM_TIMEOUTS__BUILD",
            "99999",
            "timeouts.build: 99999 is out of range (allowed: int 1..7200) [from KISYSTEM_TIMEOUTS__BUILD]",
        ),
        (
            "KISYSTEM_ENABLE_META_SUPERVISOR",
            "maybe",
            'enable_meta_supervisor: "maybe" is not a bool (allowed: bool) [from KISYSTEM_ENABLE_META_SUPERVISOR]',
        ),
    ],
)
def test_env_bad_value_names_variable(name: str, text: str, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={name: text})
    assert info.value.problems == [line]


def test_unknown_env_var_is_an_error() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, env={"KISYSTEM_TIMEOUT__BUILD": "600", "KISYSTEM_BOGUS": "1"})
    assert info.value.problems == [
        "KISYSTEM_BOGUS: unknown KISYSTEM_ variable",
        "KISYSTEM_TIMEOUT__BUILD: unknown KISYSTEM_ variable (did you mean KISYSTEM_TIMEOUTS__BUILD?)",
    ]


def test_reserved_and_foreign_env_vars_are_ignored() -> None:
    env = {"KISYSTEM_HOME": "/x", "KISYSTEM_DB": "/x/db", "KISYSTEM_CONFIG": "/x/c.json", "HOME": "/root"}
    assert set(load_config(None, env=env).sources.values()) == {"default"}


def test_load_ignores_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KISYSTEM_TARGET_SCORE", "90")
    assert OptimizationConfig.load(write(tmp_path, {})).target_score == 80
    assert load_config(None).config.target_score == 90  # load_config reads os.environ by default


# --- which file ---------------------------------------------------------------------


def test_config_path_prefers_explicit_config(tmp_path: Path) -> None:
    (tmp_path / "optimization_config.json").write_text("{}")
    explicit = tmp_path / "other.json"
    assert config_path_for(Paths(home=tmp_path, db=tmp_path / "db", config=explicit)) == explicit


def test_config_path_uses_home_file_only_if_present(tmp_path: Path) -> None:
    paths = Paths(home=tmp_path, db=tmp_path / "db", config=None)
    assert config_path_for(paths) is None
    (tmp_path / "optimization_config.json").write_text("{}")
    assert config_path_for(paths) == tmp_path / "optimization_config.json"
