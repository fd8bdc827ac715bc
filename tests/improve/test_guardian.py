"""Static analysis of generated code (ruff, bandit, compiler warnings) and its guardian feedback."""

from __future__ import annotations

import pytest

from kisystem.improve import guardian
from kisystem.improve.guardian import review

RISKY = "import os\nimport subprocess\n\n\ndef run(cmd):\n    subprocess.call(cmd, shell=True)\n    return eval(cmd)\n"
CLEAN = "def add(a, b):\n    return a + b\n"


async def test_python_findings_lower_quality_and_security():
    found = await review("python", RISKY)
    assert found is not None and found.tools == ("ruff", "bandit")
    assert found.quality == pytest.approx(1 - 2 * 1 / 5)  # one finding (unused import os) in 5 lines of code
    assert found.security == pytest.approx(1 - (0.1 + 0.5 + 0.25))  # B404 low, B602 high, B307 medium
    assert any("F401" in f for f in found.findings) and any("B602" in f for f in found.findings)


async def test_clean_python_scores_full_marks():
    assert await review("python", CLEAN) == guardian.Review(1.0, 1.0, [], ("ruff", "bandit"))


async def test_asserts_are_not_security_findings():
    checked = "def clamp(x, lo, hi):\n    assert lo <= hi\n    assert lo < 10\n    assert hi > 0\n    return max(lo, min(x, hi))\n"
    assert (await review("python", checked)).security == 1.0  # bandit's B101 would have made it 0.7


async def test_c_warnings_count_and_format_security_is_a_security_finding():
    found = await review("c", "#include <stdio.h>\nint main(void) {\n  int unused;\n  char *s = 0;\n"
                              "  printf(s);\n  return 0;\n}\n")
    assert found is not None and found.tools == ("gcc",)
    assert found.security == 0.5 and found.quality == pytest.approx(1 - 2 * 1 / 7, abs=1e-3)
    assert any("format" in f for f in found.findings) and any("unused" in f for f in found.findings)


@pytest.mark.parametrize("language, code", [("markdown", "# Title\n"), ("python", "   \n"), ("cuda", "__global__ void k(){}")])
async def test_no_review_without_code_or_analysers(language, code):
    assert await review(language, code) is None
