"""The calls judge: a Python function's answers, checked by the task's own tests, outside it.

Three sandboxed runs, none of which trusts the candidate's output:

1. record (``prepare``, in the judge's directory): the judge script runs the task's
   ``check(candidate)`` with the reference function as the candidate and writes down the
   arguments of every call (``calls.jsonl``);
2. candidate (``test``, in the workspace): the runner imports the solution and answers
   the recorded calls, one line each on a private stdout (the solution's own prints go
   to stderr);
3. replay (``test``, in the judge's directory): the judge script runs ``check()``
   again, the candidate's answers standing in for the calls, and counts the tests.

What the candidate prints, its exit status, or objects it builds cannot raise its
result: the answers cross as tagged JSON and are decoded into plain values by the
judge.  The scripts are in ``calls_scripts/`` (standard library only).
"""

from __future__ import annotations

import json
from dataclasses import replace
from importlib import resources
from pathlib import Path

from kisystem.loop.taskspec import JudgeSpec, TaskSpec
from kisystem.sandbox.judge.base import JudgeContext, JudgeError, Timing, Verdict, clip, write_fresh
from kisystem.sandbox.process import DEFAULT_MAX_OUTPUT, ProcessResult, run_sandboxed

SCRIPTS = "kisystem.sandbox.judge.calls_scripts"
JUDGE_SCRIPT, CODEC = "judge.py", "codec.py"
RUNNER_SCRIPT, RUNNER_CODEC = "kisystem_runner.py", "kisystem_codec.py"  # in the workspace
CALLS_FILE = "calls.jsonl"  # written by the record run
ANSWER_LIMIT = 8 * 1024 * 1024  # bytes of the candidate's answers that the replay reads
JUDGE_TIMEOUT_S = 60.0  # one record or replay run
LOG_LIMIT = DEFAULT_MAX_OUTPUT  # of the candidate's stderr kept in its ProcessResult


def script(name: str) -> str:
    return resources.files(SCRIPTS).joinpath(name).read_text(encoding="utf-8")


class CallsJudge:
    """The judge of a task with ``[judge] kind = "calls"``."""

    def __init__(self, task: TaskSpec) -> None:
        spec: JudgeSpec | None = task.judge
        if spec is None or spec.kind != "calls" or not spec.entry_point:
            raise ValueError(f"task {task.id} has no calls judge")
        self.task = task
        self.spec = spec
        self.entry_point: str = spec.entry_point

    async def prepare(self, ctx: JudgeContext) -> None:
        """Write the judge's files into its directory and record the reference's calls."""
        try:
            for name, text in {**self.task.fixed, **self.spec.files}.items():
                path = ctx.judge_dir / name
                path.parent.mkdir(parents=True, exist_ok=True)
                write_fresh(path, text)
            write_fresh(ctx.judge_dir / JUDGE_SCRIPT, script("judge.py"))
            write_fresh(ctx.judge_dir / CODEC, script("codec.py"))
        except OSError as err:
            raise JudgeError(f"{self.task.id}: cannot write the judge's files: {err}") from None
        summary = await self._judge_run(ctx, ["record", self.entry_point, self.spec.tests,
                                              self.spec.reference, str(ctx.seed)])
        if "error" in summary:
            raise JudgeError(f"{self.task.id}: {summary['error']}")
        if not summary.get("groups"):
            raise JudgeError(f"{self.task.id}: the judge's check() holds no test")

    async def test(self, ctx: JudgeContext, workspace: Path, timeout_s: float) -> Verdict:
        """Run the candidate on the recorded calls, then replay the tests on its answers."""
        try:
            calls = (ctx.judge_dir / CALLS_FILE).read_bytes()
        except OSError:
            raise JudgeError(f"{self.task.id}: the calls judge was not prepared") from None
        candidate = await self._run_candidate(ctx, workspace, timeout_s, calls)
        answers = candidate.stdout.encode()[:ANSWER_LIMIT]
        verdict = await self._judge_run(ctx, ["replay", self.entry_point, self.spec.tests, str(ctx.seed),
                                              self.task.solution_file], stdin=answers)
        try:
            passed, total, detail = int(verdict["passed"]), int(verdict["total"]), str(verdict["detail"])
        except (KeyError, TypeError, ValueError):
            raise JudgeError(f"{self.task.id}: the judge's replay gave no verdict: {verdict!r:.300}") from None
        if candidate.timed_out and passed < total:
            detail += f"\n  (the program was stopped after {timeout_s:g} s)"
        log = replace(candidate, output=clip(candidate.output, LOG_LIMIT), stdout="")
        return Verdict(passed, total, clip(detail), candidate=log)

    async def time(self, ctx: JudgeContext, workspace: Path, timeout_s: float, rounds: int) -> Timing:
        return Timing(skipped="the calls judge does not time")

    async def _run_candidate(self, ctx: JudgeContext, workspace: Path, timeout_s: float,
                             calls: bytes) -> ProcessResult:
        try:
            write_fresh(workspace / RUNNER_SCRIPT, script("runner.py"))
            write_fresh(workspace / RUNNER_CODEC, script("codec.py"))
        except OSError as err:
            raise JudgeError(f"{self.task.id}: cannot write the runner into {workspace}: {err}") from None
        try:
            return await run_sandboxed(
                ["python", "-I", "-B", RUNNER_SCRIPT, self.task.solution_file, self.entry_point], workspace,
                timeout_s, ctx.limits, level=ctx.level, stdin_data=calls, split_stdout=True,
                max_output_bytes=2 * ANSWER_LIMIT + 2)  # keeps the first ANSWER_LIMIT bytes whole
        finally:
            for name in (RUNNER_SCRIPT, RUNNER_CODEC):
                path = workspace / name
                if path.is_symlink() or path.is_file():
                    path.unlink()

    async def _judge_run(self, ctx: JudgeContext, args: list[str], stdin: bytes | None = None) -> dict:
        """One run of the judge script in the judge's directory; its one-line JSON result."""
        result = await run_sandboxed(["python", "-I", "-B", JUDGE_SCRIPT, *args], ctx.judge_dir, JUDGE_TIMEOUT_S,
                                     ctx.limits, level=ctx.level, stdin_data=stdin if stdin is not None else b"",
                                     split_stdout=True)
        what = f"{self.task.id}: the calls judge's {args[0]} run"
        if not result.succeeded:
            end = "timed out" if result.timed_out else f"ended with {result.exit_code or result.signal}"
            raise JudgeError(f"{what} {end}: {clip(result.output.strip(), 1500)}")
        try:
            out = json.loads(result.stdout)
        except ValueError:
            raise JudgeError(f"{what} printed no result: {clip(result.stdout, 300)!r}") from None
        if not isinstance(out, dict):
            raise JudgeError(f"{what} printed no result: {clip(result.stdout, 300)!r}")
        return out
