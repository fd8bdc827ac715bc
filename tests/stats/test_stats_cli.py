"""`kisystem stats [--json] [--days N]`: every figure in the JSON, the tables at 80 columns, the no-data
wording, and one clear line for a missing or unreadable database."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from kisystem.cli import main as cli_main
from kisystem.cli.stats_cmd import render
from kisystem.stats import Window, collect
from tests.stats.support import PY, Clock, Db, Step, bias_history, fill, guide_queue, profiled_run


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("KISYSTEM_HOME", str(home))
    return home


@pytest.fixture
def filled(home: Path) -> Path:
    """The goals test's database, a day old, plus one Python run of 30 days ago (outside --days 7)."""
    start = datetime.now(UTC) - timedelta(days=1)
    db = Db(home / "learning.db", Clock(start))
    try:
        db.clock.now = start - timedelta(days=30)
        db.run([Step("small", "ok")], "success")
        db.clock.now = start
        bias_history(db)
        profiled_run(db)
        fill(db)
        guide_queue(db)
    finally:
        db.close()
    return db.path


def stats_json(*args: str) -> dict:
    cli_main._register_commands()
    result = CliRunner().invoke(cli_main.cli, ["stats", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_holds_every_figure(filled: Path) -> None:
    data = stats_json("--days", "7")
    assert data["db"] == str(filled) and data["window"]["days"] == 7
    goals = {g["metric"]: g for g in data["goals"]}
    assert goals["Model Selection Accuracy"]["value"] == 0.5
    assert goals["Profiling Time Reduction"]["value"] == pytest.approx(20 / 36)
    assert goals["Task Efficiency"]["value"] == pytest.approx(196_500 / 188_700 - 1)
    assert (goals["Error Recovery"]["value"], goals["Error Recovery"]["status"]) == (0.5, "met")
    totals = data["escalation"]["totals"]
    assert (totals["escalations"], totals["stoploss_triggers"], totals["escalated_runs"], totals["recovered"]) == (
        3, 4, 2, 1)
    py = next(d for d in data["escalation"]["domains"] if d["domain"] == PY)
    assert py["runs"] == 5  # profiled run + fill's four; the run of 30 days ago is outside the window
    small = next(m for m in py["models"] if m["model"] == "small")
    assert (small["attempts"], small["solved"], small["model_s"]) == (8, 2, 74.0)  # 3 profiled + 5 of fill
    q = data["efficiency"]
    assert (q["tasks"], q["finished"], q["never_leased"], q["avg_wait_s"]) == (4, 3, 1, pytest.approx(230.0))
    assert q["throughput_per_h"] == pytest.approx(3 / (7 * 24))
    assert q["roi_accuracy"]["recorded"] is False
    assert data["profiling"]["tier0_count"] == 2 and data["profiling"]["tier1_count"] == 1
    assert data["meta"]["bias"]["followed"] == 2


def test_without_days_the_window_is_all_history(filled: Path) -> None:
    data = stats_json()
    assert data["window"]["days"] is None and data["window"]["since"] is None
    py = next(d for d in data["escalation"]["domains"] if d["domain"] == PY)
    assert py["runs"] == 6


def test_an_empty_database_says_no_data_in_json_and_in_an_80_column_table(home: Path) -> None:
    Db(home / "learning.db").close()
    data = stats_json()
    assert all(g["value"] is None for g in data["goals"])
    assert data["escalation"]["no_data"] == "no data yet (needs finished runs in the learning database)"
    assert data["efficiency"]["vs_fifo"]["no_data"] == "no data yet (needs at least 2 finished queued tasks)"
    assert data["profiling"]["no_data"].startswith("no data yet (needs profiled iterations")
    db = Db(home / "learning.db")
    try:
        text = rendered(collect(db.store, Window(db.clock())))
    finally:
        db.close()
    flat = " ".join(text.split())
    for needs in ("at least 2 finished queued tasks", "finished runs in the learning database",
                  "runs escalated to another model after a failed iteration"):
        assert f"no data yet (needs {needs})" in flat
    assert " 0%" not in flat  # a figure without data is never shown as zero


def rendered(report, width: int = 80) -> str:
    console = Console(file=StringIO(), width=width, record=True, color_system=None)
    console.print(render(report, "learning.db"))
    lines = console.export_text().splitlines()
    assert all(len(line.rstrip()) <= width for line in lines), "\n".join(lines)
    return "\n".join(lines)


def test_the_filled_report_fits_80_columns_with_names_whole(tmp_path: Path) -> None:
    db = Db(tmp_path / "learning.db")
    try:
        bias_history(db)
        fill(db)
        guide_queue(db)
        text = rendered(collect(db.store, Window(db.clock())))
    finally:
        db.close()
    for whole in ("Model Selection Accuracy", "Python/General", "C++/System", "50% (1 of 2 runs)",
                  "not recorded: the queue does not"):
        assert whole in text, text


def fails(capsys: pytest.CaptureFixture, code: int, *args: str) -> str:
    """The one error line of ``kisystem ARGS`` through the real entry point."""
    with pytest.raises(SystemExit) as exit_:
        cli_main.main(list(args))
    assert exit_.value.code == code
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_a_missing_database_is_one_line_and_stays_missing(home: Path, capsys: pytest.CaptureFixture) -> None:
    line = fails(capsys, 2, "stats")
    assert line.startswith(f"error: no learning database at {home / 'learning.db'}")
    assert not (home / "learning.db").exists()


def test_an_unreadable_database_is_one_line(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not an SQLite file" * 100)
    assert "junk.db" in fails(capsys, 1, "--db", str(junk), "stats", "--json")
    assert "is a directory" in fails(capsys, 1, "--db", str(tmp_path), "stats")
