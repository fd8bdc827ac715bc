"""ErrorCategorizer against real tool outputs (tests/loop/corpus, made by make_corpus.sh)
and against the properties the supervisor relies on: signatures, excerpts, fallbacks."""

from __future__ import annotations

import json
import re
import string
import time
import tomllib
from itertools import combinations
from pathlib import Path

import pytest

from kisystem.loop.categorizer import (
    EXCERPT_MAX, RULES, ErrorCategorizer, ErrorInfo, ErrorType, Phase,
)

CORPUS = Path(__file__).parent / "corpus"
CASES = tomllib.loads((CORPUS / "expected.toml").read_text(encoding="utf-8"))["case"]
for _case in CASES:
    _case.setdefault("id", _case["file"])


def categorize_case(case: dict) -> ErrorInfo:
    output = (CORPUS / f"{case['file']}.txt").read_text(encoding="utf-8")
    return ErrorCategorizer().categorize(
        case["phase"], case.get("exit_status"), output,
        timed_out=case.get("timed_out", False), signal=case.get("signal"))


@pytest.fixture(scope="module")
def verdicts() -> dict[str, ErrorInfo]:
    return {case["id"]: categorize_case(case) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_corpus_case(case: dict, verdicts: dict[str, ErrorInfo]) -> None:
    info = verdicts[case["id"]]
    got = (info.rule, info.error_type, info.severity, info.recoverable, info.transient)
    want = (case["rule"], case["error_type"], case["severity"], case["recoverable"], case["transient"])
    assert got == want
    assert info.phase == case["phase"]
    assert case.get("hint_contains", "") in info.hint
    assert case.get("excerpt_contains", "") in info.excerpt
    assert 0 < len(info.excerpt) <= EXCERPT_MAX


def test_corpus_is_large_real_and_small() -> None:
    files = sorted(CORPUS.glob("*.txt"))
    assert len(files) >= 30
    assert {f.stem for f in files} == {c["file"] for c in CASES}, "every file has a case"
    assert all(f.stat().st_size < 4096 for f in files)


def test_signatures_equal_exactly_where_expected(verdicts: dict[str, ErrorInfo]) -> None:
    def group(case: dict) -> str:
        return case.get("same_signature_as", case["id"])

    for a, b in combinations(CASES, 2):
        same = group(a) == group(b) and a["phase"] == b["phase"]
        sig_a, sig_b = verdicts[a["id"]].signature, verdicts[b["id"]].signature
        assert (sig_a == sig_b) == same, (a["id"], b["id"])


def test_guide_example_holds_exactly() -> None:
    info = ErrorCategorizer().categorize("BUILD", 1, "undefined reference to `cudaMalloc`")
    d = info.to_dict()
    assert {k: d[k] for k in ("error_type", "phase", "severity", "recoverable")} == {
        "error_type": "COMPILATION", "phase": "BUILD", "severity": 2, "recoverable": True}
    assert d["hint"].startswith("Add -lcudart to linker flags")
    assert "cudaMalloc" in d["hint"]


def test_to_dict_shape_and_json() -> None:
    d = ErrorCategorizer().categorize(Phase.TEST, 1, "KeyError: 'x'").to_dict()
    assert set(d) == {"error_type", "phase", "severity", "recoverable", "hint", "rule",
                      "excerpt", "signature", "transient"}
    assert type(d["error_type"]) is str and type(d["phase"]) is str
    assert (d["error_type"], d["phase"]) == ("RUNTIME", "TEST")
    assert json.loads(json.dumps(d)) == d


def _shift(text: str) -> str:
    """The same error seen in another run: other temp dir, pid, addresses, lines, timing."""
    text = re.sub(r"/tmp/tmp\.\w+", "/tmp/tmp.OtherDir42", text)
    text = re.sub(r"==\d+==", "==99999==", text)
    text = re.sub(r"0x[0-9a-f]+", "0xdeadbeef", text)
    text = re.sub(r"(main\.c|main\.py|test_calc\.py|calc\.py)([:\", line]+)(\d+)",
                  lambda m: f"{m[1]}{m[2]}{int(m[3]) + 17}", text)
    return re.sub(r"in \d+\.\d+s", "in 12.34s", text)


@pytest.mark.parametrize("name", ["asan_heap_buffer_overflow", "py_name_error", "pytest_failed",
                                  "valgrind_invalid_write", "nvcc_cudamalloc_undefined"])
def test_signature_ignores_run_specific_noise(name: str) -> None:
    text = (CORPUS / f"{name}.txt").read_text(encoding="utf-8")
    assert _shift(text) != text
    c = ErrorCategorizer()
    assert c.categorize("TEST", 1, _shift(text)).signature == c.categorize("TEST", 1, text).signature


def test_signature_tells_different_errors_of_one_rule_apart() -> None:
    c = ErrorCategorizer()
    a = c.categorize("BUILD", 1, "main.cpp:(.text+0xa): undefined reference to `helper(int)'")
    b = c.categorize("BUILD", 1, "main.cpp:(.text+0xa): undefined reference to `other(int)'")
    assert a.rule == b.rule and a.signature != b.signature
    py1 = c.categorize("TEST", 1, "Traceback:\nKeyError: 'rate'")
    py2 = c.categorize("TEST", 1, "Traceback:\nKeyError: 'depth'")
    assert py1.signature != py2.signature


def test_excerpt_is_bounded_for_huge_output() -> None:
    lines = [f"/tmp/x/main.cpp:{i}:5: error: odd thing number {i} " + "x" * 500 for i in range(5_000)]
    info = ErrorCategorizer().categorize("BUILD", 1, "\n".join(lines))
    assert info.rule == "cc.error"
    assert len(info.excerpt) <= EXCERPT_MAX and info.excerpt.endswith("\n...")
    assert all(len(line) <= 200 for line in info.excerpt.splitlines())
    assert info.excerpt.startswith("/tmp/x/main.cpp:0:5: error: odd thing number 0 ")


def test_excerpt_keeps_the_traceback_frame() -> None:
    info = categorize_case({"file": "py_zero_division", "phase": "TEST", "exit_status": 1})
    assert "in ratio" in info.excerpt and "return a / b" in info.excerpt
    assert info.excerpt.endswith("ZeroDivisionError: division by zero")


@pytest.mark.parametrize("phase, status, rule, error_type, severity", [
    ("BUILD", 2, "fallback.build", ErrorType.COMPILATION, 3),
    ("BUILD", 0, "fallback.build_ok", ErrorType.COMPILATION, 1),
    ("TEST", 1, "fallback.test", ErrorType.LOGIC, 3),
    ("TEST", None, "fallback.test", ErrorType.LOGIC, 3),
    ("PROFILE", 3, "fallback.profile", ErrorType.RUNTIME, 3),
    ("PROFILE", 0, "fallback.profile_ok", ErrorType.PERFORMANCE, 2),
])
def test_unknown_output_falls_back_by_phase(phase: str, status: int | None, rule: str,
                                            error_type: ErrorType, severity: int) -> None:
    output = "\n".join(f"step {i}: something odd" for i in range(40))
    info = ErrorCategorizer().categorize(phase, status, output)
    assert (info.rule, info.error_type, info.severity) == (rule, error_type, severity)
    assert info.recoverable and not info.transient
    assert "step 39" in info.excerpt and "step 0:" not in info.excerpt


def test_exit_127_without_message_is_a_missing_tool() -> None:
    info = ErrorCategorizer().categorize("BUILD", 127, "")
    assert (info.rule, info.severity, info.recoverable) == ("env.tool_missing", 5, False)


def test_timeout_outranks_what_the_partial_output_says() -> None:
    c = ErrorCategorizer()
    partial = "FAILED test_a.py::test_x - assert 1 == 2\n1 failed, 3 passed in 0.2s"
    info = c.categorize("test", None, partial, timed_out=True, signal=9)
    assert (info.rule, info.error_type, info.transient) == ("timeout.test", ErrorType.RUNTIME, True)
    assert c.categorize("BUILD", 124, "").rule == "timeout.build"


def test_phase_accepts_any_case_and_rejects_unknown() -> None:
    c = ErrorCategorizer()
    assert c.categorize("build", 1, "").phase is Phase.BUILD
    with pytest.raises(ValueError):
        c.categorize("deploy", 1, "")


@pytest.mark.parametrize("output, rule, severity, recoverable, transient", [
    # strings as printed by cudaGetErrorString; no GPU here to produce them for real
    ("CUDA error: out of memory", "cuda.out_of_memory", 3, True, True),
    ("CUDA error: an illegal memory access was encountered", "cuda.illegal_address", 4, True, False),
    ("CUDA error: invalid configuration argument", "cuda.launch_config", 3, True, False),
    ("CUDA error: no CUDA-capable device is detected", "cuda.no_device", 5, False, False),
    ("bash: fork: retry: Resource temporarily unavailable", "env.resource_unavailable", 5, False, True),
    ("g++: fatal error: Killed signal terminated program cc1plus", "signal.sigkill", 3, True, True),
    ("free(): double free detected in tcache 2\ndouble free or corruption (out)",
     "libc.heap_corruption", 4, True, False),
    ("[==========] 2 tests from 1 test suite ran. (0 ms total)\n[  PASSED  ] 1 test.\n"
     "[  FAILED  ] 1 test, listed below:\n[  FAILED  ] Calc.Add\n", "gtest.failed", 3, True, False),
])
def test_messages_without_a_real_capture(output: str, rule: str, severity: int,
                                         recoverable: bool, transient: bool) -> None:
    info = ErrorCategorizer().categorize("TEST", 1, output)
    assert (info.rule, info.severity, info.recoverable, info.transient) == (
        rule, severity, recoverable, transient)


def test_warnings_only_count_when_the_build_passed() -> None:
    warning = "main.cpp:2:9: warning: unused variable ‘x’ [-Wunused-variable]"
    c = ErrorCategorizer()
    assert c.categorize("BUILD", 0, warning).rule == "cc.warning"
    assert c.categorize("BUILD", 1, warning).rule == "fallback.build"


def test_ansi_colours_do_not_matter() -> None:
    plain = "main.cpp:2:12: error: ‘compute_sum’ was not declared in this scope"
    coloured = ("\x1b[01m\x1b[Kmain.cpp:2:12:\x1b[m\x1b[K \x1b[01;31m\x1b[Kerror: \x1b[m\x1b[K"
                "‘\x1b[01m\x1b[Kcompute_sum\x1b[m\x1b[K’ was not declared in this scope")
    c = ErrorCategorizer()
    assert c.categorize("BUILD", 1, coloured).signature == c.categorize("BUILD", 1, plain).signature


def test_custom_rule_table_is_used() -> None:
    assert ErrorCategorizer(rules=()).categorize("BUILD", 1, "error: expected ';'").rule == "fallback.build"


def test_rule_table_is_consistent() -> None:
    names = [r.name for r in RULES]
    assert len(names) == len(set(names))
    for r in RULES:
        assert 1 <= r.severity <= 5, r.name
        assert r.recoverable or r.severity == 5, r.name
        fields = {f for _, f, _, _ in string.Formatter().parse(r.hint) if f}
        assert fields <= set(r.pattern.groupindex), r.name


@pytest.mark.parametrize("phase, error_type", [("TEST", ErrorType.RUNTIME),
                                               ("PROFILE", ErrorType.PERFORMANCE)])
def test_cpu_time_limit_is_a_timeout(phase: str, error_type: ErrorType) -> None:
    partial = "E   AssertionError: an early test failed, a later one hangs"
    info = ErrorCategorizer().categorize(phase, None, partial, signal=24)
    assert (info.rule, info.error_type, info.transient) == (f"timeout.{phase.lower()}", error_type, True)


def test_signal_words_in_output_do_not_count_when_the_process_exited_0() -> None:
    c = ErrorCategorizer()
    assert c.categorize("PROFILE", 0, "Killed\nSegmentation fault").rule == "fallback.profile_ok"
    assert c.categorize("PROFILE", 1, "Killed\nSegmentation fault").rule == "signal.sigkill"


@pytest.mark.parametrize("exit_status, sig", [(-11, None), (139, None), (None, 11), (1, 11)])
def test_signal_from_status_or_argument(exit_status: int | None, sig: int | None) -> None:
    info = ErrorCategorizer().categorize("TEST", exit_status, "", signal=sig)
    assert (info.rule, info.severity, info.transient) == ("signal.sigsegv", 3, False)


def test_pathological_long_lines_stay_fast() -> None:
    start = time.perf_counter()
    info = ErrorCategorizer().categorize("BUILD", 1, "error: " * 20_000)
    assert time.perf_counter() - start < 1.0
    assert info.rule == "fallback.build"
