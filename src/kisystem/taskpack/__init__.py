"""The built-in task pack: optimization tasks on real compiled code.

Each ``*.toml`` here is a task spec (:mod:`kisystem.loop.taskspec`).  Its fixed files sit
in a directory of their own (``task.h`` with the signature, ``reference.*`` with the tuned
reference implementation, ``test.*`` with correctness tests on fresh random inputs every
run, ``bench.*`` timing candidate and reference in the same run) plus the shared harness
``common/kbench.h``.  The starter is a naive but correct solution.  CUDA tasks print
``KISYSTEM_SKIP`` and pass where no GPU is present: they are then compiled only.
"""

from __future__ import annotations

from pathlib import Path

from kisystem.loop.taskspec import TaskSpec, TaskSpecError, load_task, load_tasks

PACK_DIR = Path(__file__).resolve().parent
REFERENCE_PREFIX = "ref_"  # every reference symbol carries it; the solution's names lack it


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
    """The reference implementation as the solution file: its ``ref_`` names dropped."""
    for name, text in task.fixed.items():
        if Path(name).stem == "reference":
            return {task.solution_file: text.replace(REFERENCE_PREFIX, "")}
    raise TaskSpecError(f"task {task.id} has no fixed reference file")


def spec_path(task_id: str) -> Path:
    """The spec file of a pack task (for ``kisystem run``)."""
    for path in sorted(PACK_DIR.glob("*.toml")):
        if load_task(path).id == task_id:
            return path
    raise TaskSpecError(f"no task {task_id!r} in the task pack")
