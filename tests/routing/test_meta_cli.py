"""`kisystem meta priorities | bias | explain | stats` and `bench meta-scale`."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from kisystem.cli import main as cli_main
from kisystem.cli.meta_cmd import meta_group, meta_scale_command
from kisystem.store.learning import LearningStore, RunResult

CUDA, DSP, QWEN = "CUDA/Kernel", "Audio/DSP", "qwen2.5-coder:32b"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    monkeypatch.setenv("KISYSTEM_HOME", str(home))
    return home


@pytest.fixture
def history(home: Path) -> Path:
    now = datetime.now(UTC)
    db = home / "learning.db"
    for i in range(8):
        with LearningStore.open(db, clock=lambda: now - timedelta(days=i + 0.5)) as store:
            run_id = store.start_run("t", CUDA, QWEN)
            outcome = "failed" if i == 7 else "success"
            store.finish_run(run_id, RunResult(QWEN, 1, None, outcome, models_tried=(QWEN,), wall_s=100.0))
    with LearningStore.open(db, clock=lambda: now - timedelta(days=10)) as store:
        store.finish_run(store.start_run("t", DSP, QWEN), RunResult(QWEN, 1, None, "failed", wall_s=20.0))
    return db


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    cli_main._register_commands()
    cli_main.cli.add_command(meta_group)  # until main registers it
    return CliRunner().invoke(cli_main.cli, list(args), env=env)


def as_json(*args: str, env: dict[str, str] | None = None) -> object:
    result = invoke(*args, "--json", env=env)
    assert result.exit_code == 0, result.output + result.stderr
    return json.loads(result.stdout)


def test_priorities(history: Path) -> None:
    ranked = as_json("meta", "priorities")
    assert [r["domain"] for r in ranked] == [DSP, CUDA]
    assert as_json("meta", "priorities", "--top", "1") == ranked[:1]
    table = invoke("meta", "priorities")
    assert table.exit_code == 0 and CUDA in table.stdout and "priority" in table.stdout


def test_bias(history: Path) -> None:
    got = as_json("meta", "bias")
    assert list(got) == [CUDA] and got[CUDA]["model"] == QWEN and got[CUDA]["runs"] == 8
    assert QWEN in invoke("meta", "bias").stdout


def test_explain(history: Path) -> None:
    got = as_json("meta", "explain", CUDA)
    assert got["run_count"] == 8 and set(got["factors"]) == {
        "failure_contribution", "time_contribution", "count_contribution", "recency_boost"}
    assert "failure_contribution" in invoke("meta", "explain", CUDA).stdout


def test_stats(history: Path) -> None:
    got = as_json("meta", "stats")
    assert got["runs"] == 9 and "bias_hit_rate" in got and "avg_priority_error" in got
    assert "bias hit rate" in invoke("meta", "stats").stdout


def test_unknown_domain_is_one_line_and_exit_2(history: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cli_main.cli.add_command(meta_group)
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main(["meta", "explain", "Nope/Domain"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Nope/Domain" in err[0] and CUDA in err[0] and DSP in err[0]


def test_missing_database_reads_as_empty_and_is_not_created(home: Path) -> None:
    assert as_json("meta", "priorities") == [] and as_json("meta", "bias") == {}
    assert as_json("meta", "stats")["runs"] == 0
    assert invoke("meta", "explain", CUDA).exit_code != 0
    assert not (home / "learning.db").exists()


def test_disabled_supervisor(history: Path) -> None:
    env = {"KISYSTEM_ENABLE_META_SUPERVISOR": "false"}
    assert as_json("meta", "priorities", env=env) == [] and as_json("meta", "bias", env=env) == {}
    assert "disabled" in invoke("meta", "bias", env=env).stderr


def test_bench_meta_scale_small(home: Path, tmp_path: Path) -> None:
    cli_main._register_commands()
    bench = cli_main.cli.commands["bench"]
    bench.add_command(meta_scale_command)  # type: ignore[attr-defined]
    db = tmp_path / "scale.db"
    got = as_json("bench", "meta-scale", "--runs", "300", "--repeats", "2", "--db", str(db))
    assert got["runs"] == 300 and got["agree"] is True and got["aggregate_ms"] > 0 and got["scan_ms"] > 0
    again = invoke("bench", "meta-scale", "--db", str(db), "--repeats", "1")  # reuses the kept database
    assert again.exit_code == 0 and "same answers" in again.stdout


def test_bias_says_how_far_each_pair_is_from_the_gate(history: Path) -> None:
    out = invoke("meta", "bias").stdout
    assert QWEN in out.split("not yet recommended")[0]  # CUDA's recommendation, in the table
    assert f"{DSP} · {QWEN}: 1 runs, 0 solved; 4 more runs, success 0.00 < 0.65" in out


def test_bias_on_an_empty_record_explains_itself(home: Path) -> None:
    out = invoke("meta", "bias").stdout
    assert "no finished runs yet" in out and "5 runs" in out


def test_bias_with_every_domain_recommended_adds_no_explanation(home: Path) -> None:
    with LearningStore.open(home / "learning.db") as store:
        for _ in range(5):
            store.finish_run(store.start_run("t", CUDA, QWEN), RunResult(QWEN, 1, None, "success", wall_s=9.0))
    out = invoke("meta", "bias").stdout
    assert QWEN in out and "not yet" not in out and "no finished runs" not in out
