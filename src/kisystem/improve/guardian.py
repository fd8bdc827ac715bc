"""Static analysis of generated code: the ``guardian`` source of feedback.

Analysers read the code; none runs it, so they run outside the sandbox, on a copy in a
private temp dir, with a timeout.  Python: ruff (pyflakes, pycodestyle errors, bugbear)
for quality and bandit for security.  C, C++: the compiler's warnings (``-fsyntax-only
-Wall -Wextra -Wformat=2``), format-security warnings counting as security findings.  Other
languages are not reviewed.

Scores, 0..1:
  quality  = 1 - min(1, 2 * quality findings / lines of code)   (1 finding in 10 lines: 0.8)
  security = 1 - min(1, sum of bandit severities: HIGH 0.5, MEDIUM 0.25, LOW 0.1)

bandit's B101 (``assert`` used) is skipped: asserts in a generated function are checks, not a
vulnerability, and on HumanEval three of them made a "CRITICAL" finding out of nothing.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

TIMEOUT_S = 20.0
RUFF_RULES = "E9,F,B"  # syntax errors, pyflakes, bugbear: findings about the code, not its style
SECURITY_WEIGHT = {"HIGH": 0.5, "MEDIUM": 0.25, "LOW": 0.1}
FINDINGS_KEPT = 5
_C_WARNING = re.compile(r"^[^:\n]+:(\d+):\d+: warning: (.+)$", re.MULTILINE)
_COMPILERS = {"c": ("gcc", "c"), "cpp": ("g++", "c++")}


@dataclass(frozen=True)
class Review:
    quality: float
    security: float | None  # None: no security analyser for the language
    findings: list[str] = field(default_factory=list)  # the first few, "line: message"
    tools: tuple[str, ...] = ()


async def review(language: str, code: str) -> Review | None:
    """Findings on ``code``; None for a language without analysers, no code, or missing tools."""
    if not code.strip():
        return None
    if language == "python":
        return await _python(code)
    if language in _COMPILERS and shutil.which(_COMPILERS[language][0]):
        return await _c_family(language, code)
    return None


BANDIT_SKIP = "B101"


async def _python(code: str) -> Review | None:
    with tempfile.TemporaryDirectory(prefix="kisystem-guardian-") as tmp:
        path = Path(tmp) / "solution.py"
        path.write_text(code)
        ruff = await _run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--select", RUFF_RULES,
                           "--output-format", "json", str(path)])
        bandit = await _run([sys.executable, "-m", "bandit", "-q", "--skip", BANDIT_SKIP, "-f", "json", str(path)])
    quality_found = _json(ruff) if isinstance(_json(ruff), list) else None
    security_found = (_json(bandit) or {}).get("results") if isinstance(_json(bandit), dict) else None
    if quality_found is None and security_found is None:
        return None  # neither analyser answered
    findings = [f"{f['location']['row']}: {f['code']} {f['message']}" for f in quality_found or []]
    findings += [f"{f['line_number']}: {f['test_id']} {f['issue_text']}" for f in security_found or []]
    security = None if security_found is None else round(1.0 - min(
        1.0, sum(SECURITY_WEIGHT.get(f.get("issue_severity", "LOW"), 0.1) for f in security_found)), 3)
    return Review(_quality(len(quality_found or []), code), security, findings[:FINDINGS_KEPT],
                  tuple(t for t, out in (("ruff", quality_found), ("bandit", security_found)) if out is not None))


async def _c_family(language: str, code: str) -> Review:
    compiler, dialect = _COMPILERS[language]
    with tempfile.TemporaryDirectory(prefix="kisystem-guardian-") as tmp:
        path = Path(tmp) / f"solution.{dialect.replace('+', 'p')}"
        path.write_text(code)
        output = await _run([compiler, "-fsyntax-only", "-Wall", "-Wextra", "-Wformat=2", "-x", dialect, str(path)]) or ""
    warnings = [(int(line), message) for line, message in _C_WARNING.findall(output)]
    security = [w for w in warnings if "format" in w[1] and "security" in w[1]]
    findings = [f"{line}: {message}" for line, message in warnings]
    return Review(_quality(len(warnings) - len(security), code), 1.0 - min(1.0, 0.5 * len(security)),
                  findings[:FINDINGS_KEPT], (compiler,))


def _quality(findings: int, code: str) -> float:
    lines = max(1, sum(1 for line in code.splitlines() if line.strip()))
    return round(1 - min(1.0, 2 * findings / lines), 3)


async def _run(cmd: list[str]) -> str | None:
    """The command's stdout (stderr for compilers); None when it cannot run or times out."""
    try:
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL)
    except OSError:
        return None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None
    return (out or err).decode("utf-8", "replace")


def _json(text: str | None) -> object:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None
