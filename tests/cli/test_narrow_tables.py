"""The results tables of `run` and `demo` and the queue's listings in an 80-column terminal:
every task id whole on one line, no line wider than the terminal."""

from __future__ import annotations

from io import StringIO

from rich.console import Console

from kisystem.cli.demo_cmd import per_model_table
from kisystem.cli.queue_cmd import QueueView, _next_table, _task_table
from kisystem.cli.run_cmd import results_table
from kisystem.loop.supervisor import TaskResult
from kisystem.queue.runner import QueueEvent
from kisystem.store.queue import QueueTask

LONG_ID = "python-general/fibonacci-memoized-variant7"  # 42 characters
TASK_IDS = ("HumanEval_163", "pack/biquad-cascade", LONG_ID)
MODELS = ("qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "qwen2.5-coder-3b")


def result(task: str, tried: tuple[str, ...], judged_by: str = "calls", outcome: str = "success") -> TaskResult:
    attempts = {m: 2 for m in tried}
    return TaskResult("run-id", task, outcome, 100.0 if outcome == "success" else 35.0, 2 * len(tried), tried[-1],
                      tried, "reason", 12_345, 123.4, {m: 40.5 for m in tried}, attempts, judged_by)  # fmt: skip


RESULTS = [result("HumanEval_163", MODELS[:2]),
           result("pack/biquad-cascade", MODELS[1:2], "self-reported", "exhausted"),
           result(LONG_ID, MODELS)]


def queue_task(task_id: int, task: str) -> QueueTask:
    return QueueTask(id=task_id, key=f"k{task_id}", task=task, domain="Python/General", source=None, priority=None,
                     model=None, state="exhausted", attempts=3, max_attempts=3, lease_holder=None, lease_expires=None,
                     run_id="run-id", outcome="exhausted", score=35.0, created_ts="", updated_ts="",
                     note="every model of the chain failed: qwen2.5-coder-0.5b, qwen2.5-coder-1.5b")


def render(renderable: object, width: int = 80) -> list[str]:
    console = Console(file=StringIO(), width=width, record=True, force_terminal=True, color_system=None)
    console.print(renderable)
    return console.export_text().splitlines()


def assert_fits(lines: list[str], ids: tuple[str, ...] = TASK_IDS, width: int = 80) -> None:
    assert all(len(line.rstrip()) <= width for line in lines), "\n".join(lines)
    for task_id in ids:
        assert any(task_id in line for line in lines), f"{task_id} is cut or wrapped:\n" + "\n".join(lines)


def test_the_run_table_shows_every_task_id_whole_at_80_columns() -> None:
    lines = render(results_table(RESULTS))
    assert_fits(lines)
    text = "\n".join(lines)
    assert "…" not in text  # rich's ellipsis: nothing is cut, neither ids nor models nor the trust label
    assert "UNTRUSTED (self-reported)" in text
    assert " -> ".join(MODELS) in text  # the chain is on one line, not broken over three


def test_a_wide_terminal_keeps_the_table_and_a_middle_one_abbreviates_the_chain() -> None:
    wide = "\n".join(render(results_table(RESULTS), width=220))
    assert "┃ task" in wide and " -> ".join(MODELS) in wide
    middle = "\n".join(render(results_table(RESULTS[:1]), width=118))
    assert "┃ task" in middle and "2, last qwen2.5-coder-1.5b" in middle and "…" not in middle


def test_the_demo_tables_fit_80_columns() -> None:
    assert_fits(render(results_table(RESULTS)))
    per_model = render(per_model_table(RESULTS))
    assert_fits(per_model, MODELS)
    assert "┃ model" in "\n".join(per_model) and "…" not in "\n".join(per_model)  # still a table, nothing cut


def test_the_queue_listings_show_every_task_id_whole_at_80_columns() -> None:
    tasks = [queue_task(n, task) for n, task in enumerate(TASK_IDS, 101)]
    lines = render(_task_table("finished", tasks, {101: "calls", 102: "self-reported"}))
    assert_fits(lines)
    upcoming = [{"id": t.id, "domain": t.domain, "model": MODELS[1], "priority_score": 42.0, "eta_s": 95.0,
                 "priority_eff": 0.442} for t in tasks]  # fmt: skip
    assert_fits(render(_next_table(upcoming, {t.id: t for t in tasks}, 3)))


def test_the_live_queue_view_fits_80_columns() -> None:
    view = QueueView(Console(file=StringIO(), width=80), len(TASK_IDS))
    for n, task in enumerate(TASK_IDS, 1):
        view(QueueEvent(n, task, "running", f"iter 3 · {MODELS[1]} · test"))
    assert_fits(render(view._render()))
