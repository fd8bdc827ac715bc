"""security_scan: generated code of the answer store analysed, recorded as guardian security feedback;
CRITICAL answers as opportunities; pip-audit of kisystem's own packages, skipped where it cannot audit."""

from __future__ import annotations

import json
import shutil
import sys

import pytest

from kisystem.loop.taskspec import PhaseSpec, TaskSpec
from kisystem.schedule.jobs import security_scan as scan
from tests.schedule.jobs.support import CPP, PY, Db, py_spec

SHELL_PY = "```python\nimport subprocess\n\n\ndef run(cmd):\n    return subprocess.call(cmd, shell=True)\n```"
SAFE_PY = "```python\ndef add(a, b):\n    return a + b\n```"
FORMAT_C = ('```c\n#include <stdio.h>\n#include "task.h"\n\nvoid echo(const char *s) {\n    char buf[64];\n'
            '    snprintf(buf, sizeof buf, "%s", s);\n    printf(buf);\n}\n```')
# only a compile with optimization (the hardened one) sees this overflow; the guardian's -fsyntax-only does not
OVERFLOW_C = ('```c\n#include <stdio.h>\n#include <string.h>\n#include "task.h"\n\nvoid echo(const char *s) {\n'
              '    char buf[4];\n    strcpy(buf, "far too long");\n    puts(buf);\n    (void)s;\n}\n```')
C_TASK = TaskSpec(id="c.echo", domain=CPP, language="c", prompt="Write echo.", solution_file="solution.c",
                  test=PhaseSpec("true", 5.0), fixed={"task.h": "void echo(const char *s);\n"})
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")


def fake_audit(monkeypatch, report: dict | None = None, stderr: str = "", code: int = 0) -> None:
    """pip-audit replaced by a script printing ``report`` (None: nothing) and ``stderr``."""
    out = json.dumps(report) if report is not None else ""
    script = f"import sys; print({out!r}); sys.stderr.write({stderr!r}); sys.exit({code})"
    monkeypatch.setattr(scan, "AUDIT_COMMAND", [sys.executable, "-c", script])


NOT_FOUND = "Dependency not found on PyPI and could not be audited"
UNREACHABLE = {"dependencies": [{"name": "httpx", "skip_reason": NOT_FOUND},
                                {"name": "rich", "skip_reason": NOT_FOUND}], "fixes": []}


@pytest.fixture
def db(tmp_path):
    db = Db(tmp_path / "home")
    yield db
    db.close()


@needs_gcc
async def test_generated_code_is_scanned_into_security_feedback_and_critical_opportunities(db, monkeypatch):
    fake_audit(monkeypatch, UNREACHABLE)
    py = db.queue(py_spec("p.run"), {"a" * 64: ("small", SHELL_PY), "b" * 64: ("small", SAFE_PY),
                                     "c" * 64: ("small", "Sorry, I cannot do that.")})
    c = db.queue(C_TASK, {"d" * 64: ("big", FORMAT_C), "e" * 64: ("big", OVERFLOW_C)})

    result = await scan.security_scan(db.ctx())

    assert result.status == "success"
    r = result.result
    assert r["answers"]["scanned"] == 5 and r["answers"]["reviewed"] == 4
    assert r["answers"]["not_reviewed"] == {"no code in the answer": 1}
    assert r["answers"]["languages"] == {"python": 2, "c": 2}
    entries = {e.operation_id: e for e in db.feedback.entries(types=["security"])}
    assert set(entries) == {f"answer:{py}:{'a' * 16}", f"answer:{py}:{'b' * 16}", f"answer:{c}:{'d' * 16}",
                            f"answer:{c}:{'e' * 16}"}
    assert all(e.source == "guardian" for e in entries.values())
    assert entries[f"answer:{py}:{'b' * 16}"].score == 1.0
    assert entries[f"answer:{py}:{'a' * 16}"].score <= 0.5  # bandit: shell=True is HIGH
    assert any("B602" in f for f in entries[f"answer:{py}:{'a' * 16}"].details["findings"])
    assert entries[f"answer:{c}:{'d' * 16}"].score == 0.5  # a format string from outside
    overflow = entries[f"answer:{c}:{'e' * 16}"]
    assert overflow.score < 0.75 and "gcc (hardened)" in overflow.details["tools"]
    assert any("bounds" in f or "overflow" in f for f in overflow.details["findings"])
    assert r["answers"]["critical"] == 3
    found = {(o["agent"], o["domain"]): o for o in r["opportunities"]}
    assert set(found) == {("small", PY), ("big", CPP)}
    assert all(o["type"] == "security_vulnerability" and o["severity"] == "CRITICAL" for o in found.values())
    assert found[("big", CPP)]["summary"].startswith("big on C++/System: 2 of 2 answers with security findings")
    assert r["dependencies"]["status"] == "skipped"


async def test_answers_are_scanned_once(db, monkeypatch):
    db.jobs(pip_audit=False)
    db.queue(py_spec("p.add"), {"a" * 64: ("small", SAFE_PY)})
    first = await scan.security_scan(db.ctx())
    again = await scan.security_scan(db.ctx())
    assert first.status == "success" and first.result["answers"]["reviewed"] == 1
    assert again.status == "skipped"
    assert again.reason == ("no new generated code in the answer store (last 30 days), and the dependency check "
                            "was skipped: disabled (jobs.pip_audit = false)")
    assert len(db.feedback.entries(types=["security"])) == 1


async def test_at_most_the_configured_answers_per_run(db):
    db.jobs(pip_audit=False, security_max_answers=1)
    db.queue(py_spec("p.add"), {"a" * 64: ("small", SAFE_PY), "b" * 64: ("small", SAFE_PY)})
    r = (await scan.security_scan(db.ctx())).result
    assert r["answers"]["reviewed"] == 1 and r["answers"]["left_for_next_run"] == 1


async def test_pip_audit_unable_to_reach_its_service_is_a_skipped_check(db, monkeypatch):
    fake_audit(monkeypatch, UNREACHABLE)
    report = await scan.audit_dependencies(db.ctx())
    assert report["status"] == "skipped"
    assert report["reason"] == ("the vulnerability service could not be reached: none of 2 packages could be "
                                "audited (Dependency not found on PyPI and could not be audited)")


async def test_pip_audit_reports_vulnerable_packages(db, monkeypatch):
    fake_audit(monkeypatch, {"dependencies": [
        {"name": "rich", "version": "13.0", "vulns": []},
        {"name": "requests", "version": "2.0.0",
         "vulns": [{"id": "PYSEC-2023-74", "fix_versions": ["2.31.0"], "aliases": ["CVE-2023-32681"]}]},
        {"name": "local-thing", "skip_reason": "not on PyPI"}], "fixes": []}, code=1)
    report = await scan.audit_dependencies(db.ctx())
    assert report == {"status": "success", "packages": 3, "audited": 2, "not_audited": 1,
                      "vulnerable": [{"name": "requests", "version": "2.0.0", "ids": ["PYSEC-2023-74"],
                                      "fix_versions": ["2.31.0"]}]}


@pytest.mark.parametrize(("stderr", "reason"), [
    ("Traceback ...\nrequests.exceptions.ConnectionError: Failed to resolve 'api.osv.dev'",
     "pip-audit could not audit: requests.exceptions.ConnectionError: Failed to resolve 'api.osv.dev'"),
    ("/usr/bin/python: No module named pip_audit",
     "pip-audit could not audit: pip-audit is not installed (pip install pip-audit)"),
])
async def test_pip_audit_failing_is_a_skipped_check_with_the_reason(db, monkeypatch, stderr, reason):
    fake_audit(monkeypatch, None, stderr, code=1)
    assert await scan.audit_dependencies(db.ctx()) == {"status": "skipped", "reason": reason}


async def test_the_code_of_recorded_attempts_is_scanned_once(db, monkeypatch):
    fake_audit(monkeypatch, UNREACHABLE)
    run_id = db.store.start_run("p.run", PY, "small")
    code = SHELL_PY.removeprefix("```python\n").removesuffix("\n```")
    for iteration, text in ((1, code), (2, "def add(a, b):\n    return a + b\n")):
        db.store.append_event(run_id, "code", {"iteration": iteration, "model": "small", "language": "python",
                                               "file": "solution.py", "code": text})

    r = (await scan.security_scan(db.ctx())).result

    assert (r["answers"]["scanned"], r["answers"]["reviewed"], r["answers"]["critical"]) == (2, 2, 1)
    [unsafe] = r["critical"]
    assert unsafe["operation"] == f"code:{run_id}:1" and unsafe["model"] == "small"
    scores = {e.operation_id: e.score for e in db.feedback.entries(types=["security"])}
    assert scores[f"code:{run_id}:2"] == 1.0 and scores[f"code:{run_id}:1"] < 0.75
    again = (await scan.security_scan(db.ctx())).result
    assert again["answers"]["scanned"] == 0  # already scanned: not again
