"""`kisystem config show | validate | init`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kisystem.cli import main as cli_main
from kisystem.config import KEYS, OptimizationConfig, default_json
from kisystem.errors import ConfigError, UsageError


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh kisystem home and no KISYSTEM_* variables from the outer environment."""
    for name in [n for n in os.environ if n.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("KISYSTEM_HOME", str(home))
    return home


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    cli_main._register_commands()
    return CliRunner().invoke(cli_main.cli, list(args), env=env)


def run_kisystem(*args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point, exit-code mapping included."""
    return subprocess.run(
        [sys.executable, "-m", "kisystem", *args], capture_output=True, text=True, env=dict(os.environ), timeout=60
    )


def show_json(*args: str, env: dict[str, str] | None = None) -> dict:
    result = invoke(*args, "config", "show", "--json", env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# --- show ---------------------------------------------------------------------------


def test_show_json_defaults_without_any_file(home: Path) -> None:
    shown = show_json()
    assert shown["values"] == OptimizationConfig().to_dict()
    assert shown["sources"] == dict.fromkeys(KEYS, "default")


def test_show_loads_home_file_when_present(home: Path) -> None:
    home.mkdir()
    path = home / "optimization_config.json"
    path.write_text(json.dumps({"target_score": 70}))
    shown = show_json()
    assert shown["values"]["target_score"] == 70
    assert shown["sources"]["target_score"] == f"file:{path}"


def test_show_uses_global_config_option_and_env(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"timeouts": {"test": 60}}))
    shown = show_json("--config", str(path), env={"KISYSTEM_TIMEOUTS__BUILD": "600"})
    assert shown["values"]["timeouts"] == {"build": 600, "test": 60, "profile": 900}
    assert shown["sources"]["timeouts.build"] == "env:KISYSTEM_TIMEOUTS__BUILD"
    assert shown["sources"]["timeouts.test"] == f"file:{path}"


def test_show_table_lists_keys_values_and_sources(home: Path) -> None:
    result = invoke("config", "show", env={"KISYSTEM_TARGET_SCORE": "95", "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.count("│") == 4}
    assert set(KEYS) <= set(rows)
    assert "95" in rows["target_score"] and "env:KISYSTEM_TARGET_SCORE" in rows["target_score"]
    assert "300" in rows["timeouts.build"] and "default" in rows["timeouts.build"]


def test_show_with_bad_config_raises_config_error(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"retry_build": 9}))
    result = invoke("--config", str(path), "config", "show")
    assert isinstance(result.exception, ConfigError)
    assert result.exception.problems == ["retry_build: 9 is out of range (allowed: int 0..5)"]


# --- validate -----------------------------------------------------------------------


def test_validate_ok(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "good.json"
    path.write_text(json.dumps({"target_score": 85}))
    result = invoke("config", "validate", str(path))
    assert result.exit_code == 0
    assert result.output == f"ok: {path}\n"


def test_validate_ignores_environment(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "good.json"
    path.write_text("{}")
    assert invoke("config", "validate", str(path), env={"KISYSTEM_TARGET_SCORE": "500"}).exit_code == 0


def test_validate_bad_file_raises_config_error(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"timeouts": {"build": "fast"}}))
    result = invoke("config", "validate", str(path))
    assert isinstance(result.exception, ConfigError)
    assert result.exception.problems == ['timeouts.build: "fast" is not an int (allowed: int 1..7200)']


def test_validate_failure_exits_2_with_one_line_per_problem(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"target_score": 150, "timeouts": {"bild": 1}, "enable_async_io": "no"}))
    proc = run_kisystem("config", "validate", str(path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "error: target_score: 150 is out of range (allowed: int 0..100)",
        "error: timeouts.bild: unknown key (did you mean timeouts.build?)",
        'error: enable_async_io: "no" is not a bool (allowed: bool)',
    ]


def test_validate_unparsable_file_exits_2(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"target_score": }')
    proc = run_kisystem("config", "validate", str(path))
    assert proc.returncode == 2
    assert proc.stderr == f"error: {path}: invalid JSON at line 1 column 18: Expecting value\n"


def test_unknown_env_var_exits_2_naming_it(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KISYSTEM_TARGETSCORE", "90")
    proc = run_kisystem("config", "show")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.splitlines() == [
        "error: KISYSTEM_TARGETSCORE: unknown KISYSTEM_ variable (did you mean KISYSTEM_TARGET_SCORE?)"
    ]


# --- init ---------------------------------------------------------------------------


def test_init_writes_defaults_to_home(home: Path) -> None:
    result = invoke("config", "init")
    path = home / "optimization_config.json"
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {path}\n"
    assert path.read_text() == default_json()
    assert OptimizationConfig.load(path) == OptimizationConfig()


def test_init_refuses_to_overwrite_without_force(home: Path) -> None:
    home.mkdir()
    path = home / "optimization_config.json"
    path.write_text('{"target_score": 99}')
    result = invoke("config", "init")
    assert isinstance(result.exception, UsageError)
    assert "--force" in str(result.exception)
    assert path.read_text() == '{"target_score": 99}'
    assert invoke("config", "init", "--force").exit_code == 0
    assert path.read_text() == default_json()


def test_init_refusal_exits_2(home: Path) -> None:
    home.mkdir()
    (home / "optimization_config.json").write_text("{}")
    proc = run_kisystem("config", "init")
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "already exists" in proc.stderr


def test_init_honours_config_option(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "sub" / "custom.json"
    assert invoke("--config", str(path), "config", "init").exit_code == 0
    assert path.read_text() == default_json()
    assert not (home / "optimization_config.json").exists()
