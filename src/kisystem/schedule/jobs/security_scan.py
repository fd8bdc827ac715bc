"""Security scan (``cve``, daily): static analysis of the generated code kept in the learning
database, and ``pip-audit`` of kisystem's own installed dependencies.

Generated code is kept in two places: every attempt's solution file in its run's ``code``
event (operation ``code:RUN_ID:ITERATION``), and the queue's answer store (``queue_answers``:
every model answer of a queued task, with the task's spec in ``queue_tasks``).  Attempts are
analysed on their own (the task's other files are not kept with them).  Each answer of the last
``jobs.security_window_days`` (30) not scanned before (no ``guardian`` feedback for its
operation ``answer:TASK:KEY``), at most ``jobs.security_max_answers`` (200) per run, oldest
first, has its solution file taken out as the loop takes it (fenced blocks, or the
completion after the task's prefix) and analysed:

- by the guardian (:func:`kisystem.improve.guardian.review`): bandit for Python, the
  compiler's format-security warnings for C and C++;
- for C and C++ also a hardened compile (``-O2 -D_FORTIFY_SOURCE=2 -fstack-protector-strong``
  with the overflow, bounds and format warnings its analysis enables), next to the task's own
  headers, and ``cppcheck`` where it is installed.

The answer's security score (0..1) is the lower of the guardian's and 1 - the other findings'
weights (0.5 for an outside format string or memory written out of bounds or after free, as
bandit's HIGH; 0.25 for any other hardening warning; a cppcheck error / warning 0.5 / 0.25).
It is recorded as ``security`` feedback from the ``guardian`` for the model that wrote it.
Answers below ``health.security_min`` (0.75) are CRITICAL: per model and domain they raise a
``security_vulnerability`` opportunity (returned; the improvement job plans it, for approval).

``pip-audit`` checks the packages installed beside kisystem against the known-vulnerability
service; where that service cannot be reached (no network, or no package could be audited)
the check is reported as skipped with the reason, not as a failure of the job.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from kisystem.domains import DEFAULT_DOMAINS
from kisystem.errors import UsageError
from kisystem.improve import guardian
from kisystem.improve.feedback import FeedbackLoop
from kisystem.improve.opportunities import describe
from kisystem.improve.plans import Opportunity, Severity
from kisystem.loop.extract import ExtractError, complete_from_prefix, extract_files
from kisystem.loop.taskspec import TaskSpec, load_task_text
from kisystem.schedule.jobs.common import iso
from kisystem.schedule.tasks import JobContext, JobResult

OPERATION = "answer:{task}:{key}"
KEY_CHARS = 16
TIMEOUT_S = 30.0
FINDINGS_KEPT = 8
# A format string from outside (as the guardian weighs it) or memory written out of bounds or after free: as
# bandit's HIGH; any other hardening finding (uninitialized, null dereference, ...) as its MEDIUM.
HARDENING_WEIGHT = dict.fromkeys(("-Wformat-security", "-Wformat-overflow", "-Wstringop-overflow", "-Warray-bounds",
                                  "-Wuse-after-free", "-Wfree-nonheap-object", "-Wreturn-local-addr"), 0.5)
HARDENING_DEFAULT = 0.25
CPPCHECK_WEIGHT = {"error": 0.5, "warning": 0.25}
HARDENING_FLAGS = ("-O2", "-D_FORTIFY_SOURCE=2", "-fstack-protector-strong", "-Wall", "-Wextra", "-Wformat=2",
                   "-Wformat-security", "-Wformat-overflow=2", "-Wformat-truncation=2", "-Wstringop-overflow=4",
                   "-Warray-bounds=2", "-Wshift-overflow=2", "-Wnull-dereference")
SECURITY_WARNINGS = ("-Wformat", "-Wstringop", "-Warray-bounds", "-Wnull-dereference", "-Wuse-after-free",
                     "-Wfree-nonheap-object", "-Wreturn-local-addr", "-Wmaybe-uninitialized", "-Wuninitialized",
                     "-Wshift-overflow", "-Walloc-size-larger-than", "-Wvla-larger-than")
_WARNING = re.compile(r"^([^:\n]+):(\d+):\d+: warning: (.+?) \[(-W[^\]=]+)[^\]]*\]$", re.MULTILINE)
_COMPILERS = {"c": ("gcc", "c"), "cpp": ("g++", "c++")}
AUDIT_COMMAND = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off", "--local"]

_ATTEMPTS = """
SELECT e.run_id, json_extract(e.payload, '$.iteration'), json_extract(e.payload, '$.model'),
    json_extract(e.payload, '$.language'), json_extract(e.payload, '$.code'), r.task, r.domain
FROM run_events e JOIN runs r ON r.run_id = e.run_id
WHERE e.kind = 'code' AND e.ts >= ? AND NOT EXISTS (
    SELECT 1 FROM feedback_entries f WHERE f.source = 'guardian' AND f.type = 'security'
        AND f.operation_id = 'code:' || e.run_id || ':' || json_extract(e.payload, '$.iteration'))
ORDER BY e.ts, e.id
"""

_ANSWERS = """
SELECT a.task, a.key, a.model, a.text, t.task, t.domain, t.spec
FROM queue_answers a JOIN queue_tasks t ON t.id = a.task
WHERE a.ts >= ? AND NOT EXISTS (
    SELECT 1 FROM feedback_entries f WHERE f.source = 'guardian' AND f.type = 'security'
        AND f.operation_id = 'answer:' || a.task || ':' || substr(a.key, 1, 16))
ORDER BY a.ts, a.task, a.key
"""


# -- one answer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    queue_task: int
    key: str
    model: str
    text: str
    task: str
    domain: str
    spec_text: str

    @property
    def operation(self) -> str:
        return OPERATION.format(task=self.queue_task, key=self.key[:KEY_CHARS])


@dataclass(frozen=True)
class Scan:
    """What the analysers found in one answer's code; ``security`` None: nothing could judge it."""

    security: float | None
    findings: list[str] = field(default_factory=list)
    tools: tuple[str, ...] = ()


def solution_code(answer: Answer, spec: TaskSpec, mode: str) -> str:
    """The answer's solution file as the loop takes it (empty when it holds none)."""
    if mode == "completion" and spec.completion is not None:
        return complete_from_prefix(spec.completion.prefix, answer.text, spec.completion.stop)
    try:
        return extract_files(answer.text, spec.solution_file).get(spec.solution_file, "")
    except ExtractError:
        return ""


async def scan_code(language: str, code: str, files: Mapping[str, str]) -> Scan:
    """The guardian's review, and for C/C++ the hardened compile and cppcheck, as one security score."""
    review = await guardian.review(language, code)
    findings = list(review.findings) if review else []
    tools = list(review.tools) if review else []
    security = review.security if review else None
    if language in _COMPILERS:
        extra, penalty, used = await _c_checks(language, code, files)
        findings, tools = findings + extra, tools + used
        if used:
            security = round(max(0.0, min(1.0 if security is None else security, 1.0 - penalty)), 3)
    return Scan(security, findings[:FINDINGS_KEPT], tuple(dict.fromkeys(tools)))


async def _c_checks(language: str, code: str, files: Mapping[str, str]) -> tuple[list[str], float, list[str]]:
    compiler, dialect = _COMPILERS[language]
    found: list[str] = []
    penalty, used = 0.0, []
    with tempfile.TemporaryDirectory(prefix="kisystem-scan-") as tmp:
        source = _write(Path(tmp), code, files, dialect)
        if shutil.which(compiler):
            out = await _run([compiler, *HARDENING_FLAGS, "-x", dialect, "-I", tmp, "-c", "-o", "/dev/null",
                              str(source)])
            if out is not None:
                used.append(f"{compiler} (hardened)")
                warnings = [(Path(file).name, line, msg, opt) for file, line, msg, opt in _WARNING.findall(out)
                            if opt.startswith(SECURITY_WARNINGS)]  # a header's line where the bug was inlined
                found += [f"{file}:{line}: {msg} [{opt}]" for file, line, msg, opt in warnings]
                penalty += sum(HARDENING_WEIGHT.get(opt, HARDENING_DEFAULT) for *_, opt in warnings)
        if shutil.which("cppcheck"):
            out = await _run(["cppcheck", "--quiet", "--enable=warning,portability", "-I", tmp,
                              "--template={line}:{severity}:{id}:{message}", str(source)])
            if out is not None:
                used.append("cppcheck")
                for line, severity, ident, message in re.findall(r"^(\d+):(\w+):(\w+):(.+)$", out, re.MULTILINE):
                    if severity in CPPCHECK_WEIGHT:
                        found.append(f"{line}: cppcheck {severity} {ident}: {message}")
                        penalty += CPPCHECK_WEIGHT[severity]
    return found, min(1.0, penalty), used


def _write(root: Path, code: str, files: Mapping[str, str], dialect: str) -> Path:
    """The task's own files (headers the solution includes), then the solution, in ``root``."""
    root = root.resolve()
    for name, body in files.items():
        path = root / name
        if root in path.resolve().parents:  # the task's own names, never outside
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
    source = root / f"solution.{'cpp' if dialect == 'c++' else 'c'}"
    source.write_text(code)
    return source


async def _run(cmd: Sequence[str], timeout: float = TIMEOUT_S) -> str | None:
    """The command's stdout and stderr together; None when it cannot run or times out."""
    try:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
    except OSError:
        return None
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return out.decode("utf-8", "replace")


# -- the answer store -------------------------------------------------------------------------


@dataclass
class Tally:
    scanned: int = 0
    reviewed: int = 0
    not_reviewed: Counter[str] = field(default_factory=Counter)
    languages: Counter[str] = field(default_factory=Counter)
    reviews: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    critical: list[dict[str, Any]] = field(default_factory=list)
    left: int = 0


@dataclass(frozen=True)
class Scanned:
    """One piece of generated code to scan, wherever it was kept."""

    operation: str
    model: str
    domain: str
    task: str
    language: str
    code: str
    files: Mapping[str, str]  # the task's other files beside it, where known (headers for a C compile)
    context: Mapping[str, Any]


async def scan_answers(ctx: JobContext) -> Tally:
    """Scan the window's code not scanned before: the runs' attempts first, then the queue's answers."""
    s = ctx.config.jobs
    since = iso(ctx.clock() - timedelta(days=s.security_window_days))
    feedback = FeedbackLoop(ctx.store, ctx.config.feedback, clock=ctx.clock)
    tally, specs = Tally(), {}
    attempts = [_attempt(*row) for row in ctx.store.query(_ATTEMPTS, (since,))]
    answers = [Answer(*row) for row in ctx.store.query(_ANSWERS, (since,))]
    for i, item in enumerate([*attempts, *answers]):
        if tally.reviewed >= s.security_max_answers or ctx.time_left() <= 0:
            tally.left = len(attempts) + len(answers) - i
            break
        tally.scanned += 1
        if isinstance(item, Answer):
            spec = specs.get(item.queue_task) or specs.setdefault(item.queue_task, _spec(ctx, item))
            item = _from_answer(ctx, item, spec) if isinstance(spec, TaskSpec) else spec
        why = await _review(ctx, feedback, item, tally) if isinstance(item, Scanned) else item
        if why:
            tally.not_reviewed[why] += 1
    return tally


def _attempt(run_id: str, iteration: int, model: str, language: str, code: str, task: str, domain: str) -> Scanned:
    return Scanned(f"code:{run_id}:{iteration}", model, domain, task, language or "", code or "", {},
                   {"run_id": run_id, "iteration": iteration})


def _from_answer(ctx: JobContext, answer: Answer, spec: TaskSpec) -> Scanned:
    model = ctx.inventory.models.get(answer.model)
    code = solution_code(answer, spec, model.mode if model else "chat")
    return Scanned(answer.operation, answer.model, answer.domain, answer.task, spec.language, code,
                   {**spec.starter, **spec.fixed}, {"queue_task": answer.queue_task})


def _spec(ctx: JobContext, answer: Answer) -> TaskSpec | str:
    try:
        return load_task_text(answer.spec_text, f"queued task {answer.queue_task}",
                              tuple(dict.fromkeys((*ctx.inventory.routes, *DEFAULT_DOMAINS))))
    except UsageError:
        return "task spec unreadable"


async def _review(ctx: JobContext, feedback: FeedbackLoop, item: Scanned, tally: Tally) -> str | None:
    """Scan one piece of code and record its security feedback; why it was not reviewed, or None."""
    if not item.code.strip():
        return "no code in the answer"
    scan = await scan_code(item.language, item.code, item.files)
    if scan.security is None:
        return f"no security analyser for {item.language or 'an unknown language'}"
    tally.reviewed += 1
    tally.languages[item.language] += 1
    tally.reviews[(item.model, item.domain)] += 1
    details = {"findings": scan.findings, "tools": list(scan.tools), "language": item.language}
    context = {"domain": item.domain, "task": item.task, **item.context, "job": "security_scan"}
    feedback.record_feedback(item.model, item.operation, "security", scan.security, details, "guardian", context)
    if scan.security < ctx.config.health.security_min:
        tally.critical.append({"model": item.model, "domain": item.domain, "task": item.task,
                               "operation": item.operation, "security": scan.security, "findings": scan.findings})
    return None


def opportunities(tally: Tally, bar: float) -> list[Opportunity]:
    """One CRITICAL ``security_vulnerability`` per model and domain with answers under ``bar``."""
    unsafe: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for c in tally.critical:
        unsafe[(c["model"], c["domain"])].append(c)
    return [Opportunity("security_vulnerability", Severity.CRITICAL, model, domain, {
        "reviews": tally.reviews[(model, domain)], "unsafe": len(found), "worst": min(c["security"] for c in found),
        "threshold": bar, "findings": [f for c in found for f in c["findings"]][:3],
        "operations": [c["operation"] for c in found][-5:]}) for (model, domain), found in sorted(unsafe.items())]


# -- kisystem's own dependencies ----------------------------------------------------------------


async def audit_dependencies(ctx: JobContext) -> dict[str, Any]:
    """``pip-audit`` of the installed packages; skipped (with why) where it cannot audit any of them."""
    s = ctx.config.jobs
    if not s.pip_audit:
        return {"status": "skipped", "reason": "disabled (jobs.pip_audit = false)"}
    try:
        proc = await asyncio.create_subprocess_exec(*AUDIT_COMMAND, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    except OSError as err:
        return {"status": "skipped", "reason": f"pip-audit cannot run: {err}"}
    try:
        out, err = await asyncio.wait_for(proc.communicate(), s.pip_audit_timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return {"status": "skipped", "reason": f"pip-audit did not finish in {s.pip_audit_timeout_s} s"}
    return audit_report(out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), proc.returncode)


def audit_report(stdout: str, stderr: str, returncode: int | None) -> dict[str, Any]:
    """pip-audit's JSON as a short report (pip-audit exits 1 when it finds vulnerabilities)."""
    try:
        data = json.loads(stdout)
        deps = data["dependencies"]
    except (ValueError, KeyError, TypeError):
        last = (stderr.strip().splitlines() or [f"exit status {returncode}"])[-1]
        if "No module named pip_audit" in stderr:
            last = "pip-audit is not installed (pip install pip-audit)"
        return {"status": "skipped", "reason": f"pip-audit could not audit: {last[:300]}"}
    audited = [d for d in deps if "skip_reason" not in d]
    skipped = [d for d in deps if "skip_reason" in d]
    if not audited:
        why = skipped[0]["skip_reason"] if skipped else "no installed packages"
        return {"status": "skipped", "packages": len(deps),
                "reason": f"the vulnerability service could not be reached: none of {len(deps)} packages could be "
                          f"audited ({why})"}
    vulnerable = [{"name": d["name"], "version": d.get("version"),
                   "ids": [v.get("id") for v in d.get("vulns", [])],
                   "fix_versions": sorted({f for v in d.get("vulns", []) for f in v.get("fix_versions", [])})}
                  for d in audited if d.get("vulns")]
    return {"status": "success", "packages": len(deps), "audited": len(audited), "not_audited": len(skipped),
            "vulnerable": vulnerable}


# -- the job ------------------------------------------------------------------------------------


async def security_scan(ctx: JobContext) -> JobResult:
    tally = await scan_answers(ctx)
    found = opportunities(tally, ctx.config.health.security_min)
    dependencies = await audit_dependencies(ctx)
    result = {
        "answers": {"window_days": ctx.config.jobs.security_window_days, "scanned": tally.scanned,
                    "reviewed": tally.reviewed, "not_reviewed": dict(tally.not_reviewed),
                    "languages": dict(tally.languages), "critical": len(tally.critical),
                    "left_for_next_run": tally.left},
        "critical": tally.critical[:20],
        "opportunities": [{"type": o.type, "severity": str(o.severity), "agent": o.agent, "domain": o.domain,
                           "summary": describe(o)} for o in found],
        "dependencies": dependencies,
    }  # fmt: skip
    if not tally.scanned and dependencies["status"] == "skipped":
        return JobResult.skipped(f"no new generated code in the answer store (last "
                                 f"{ctx.config.jobs.security_window_days} days), and the dependency check was "
                                 f"skipped: {dependencies['reason']}", **result)
    return JobResult("success", result)
