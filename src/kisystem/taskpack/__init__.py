"""The built-in task pack: optimization tasks on real compiled code.

Each ``*.toml`` here is a task spec (:mod:`kisystem.loop.taskspec`) judged by the compare
judge (:mod:`kisystem.sandbox.judge.compare`).  Its fixed files, which the candidate sees,
sit in a directory of their own (``task.h`` with the signature, ``driver.*`` generating
the test cases and the benchmark from a seed) plus the shared protocol helpers
``common/kbench.h``.  ``reference.*``, the tuned reference solution, is a judge-only file:
the judge builds it with the same driver and compares outputs and whole-process times.
The starter is a naive but correct solution.  Where no GPU is present the CUDA task's
reference prints ``KISYSTEM_SKIP``: the task is then compiled only.
"""

from __future__ import annotations

from pathlib import Path

from kisystem.loop.taskspec import TaskSpec, TaskSpecError, load_task, load_tasks

PACK_DIR = Path(__file__).resolve().parent


def load_pack() -> list[TaskSpec]:
    """Every task of the pack, sorted by file name."""
    return load_tasks([PACK_DIR])


def pack_task(task_id: str) -> TaskSpec:
    """One task by id (``pack.matmul``) or by short name (``matmul``)."""
    for task in load_pack():
        if task_id in (task.id, task.id.removeprefix("pack.")):
            return task
    names = ", ".join(t.id for t in load_pack())
    raise TaskSpecError(f"no task {task_id!r} in the task pack (known: {names})")


def reference_solution(task: TaskSpec) -> dict[str, str]:
    """The judge's reference implementation as the solution file (for tests and baselines)."""
    files = task.judge.files if task.judge else {}
    for name, text in files.items():
        if Path(name).stem == "reference":
            return {task.solution_file: text}
    raise TaskSpecError(f"task {task.id} has no judge-only reference file")


def spec_path(task_id: str) -> Path:
    """The spec file of a pack task (for ``kisystem run``)."""
    for path in sorted(PACK_DIR.glob("*.toml")):
        if load_task(path).id == task_id:
            return path
    raise TaskSpecError(f"no task {task_id!r} in the task pack")
