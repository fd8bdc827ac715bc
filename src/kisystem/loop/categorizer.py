"""Error categorizer: turns how a phase ended (exit status, signal, timeout, output) into
an :class:`ErrorInfo` the supervisor acts on (seed B, section 6).

Order of decisions, first one that applies wins:

1. a timeout (``timed_out`` or exit status 124, GNU ``timeout``'s convention);
2. SIGKILL from outside (OOM killer, a limit; transient) or SIGXCPU (the CPU-time limit:
   a timeout); the output is cut short anyway;
3. the rule table :data:`RULES`, tried in order against the whole output (environment
   problems first, then memory-safety reports, run-time messages, compiler, linker,
   Python exceptions, test reports, warnings);
4. any other signal (from ``signal``, a negative or 128+N exit status, or the shell's
   "Segmentation fault" line);
5. a fallback by phase and exit status.

Severity scale (the supervisor escalates to a bigger model at once from 4 up, and aborts
when ``recoverable`` is False):

    1  cosmetic: a warning, nothing is broken
    2  simple local fix: typo, undeclared name, missing include, missing link flag
    3  wrong behaviour: failing tests, a run-time exception, a crash, a hang, a leak
    4  deep problem: memory corruption (sanitizers, valgrind, illegal CUDA access)
    5  environment: no GPU or driver, disk full, tool missing, permission denied;
       ``recoverable`` is False because no change to the code can fix it

``transient`` means re-running the phase on the same code may pass (DESIGN decision 4):
timeouts, kills from outside, disk full, EAGAIN, CUDA out of memory (the GPU may be
shared).  A phase timeout (or SIGXCPU, the sandbox's CPU-time limit) counts as transient
because one retry costs one time window and tells a loaded machine from a real hang; a
second one reaches the model with a hint that names an infinite loop or deadlock.  A test
harness's own per-test limit is not transient: it is generous and reported as a failed
test.
"""

from __future__ import annotations

import hashlib
import re
import signal as _signal
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class ErrorType(StrEnum):
    COMPILATION = "COMPILATION"
    RUNTIME = "RUNTIME"
    PERFORMANCE = "PERFORMANCE"
    LOGIC = "LOGIC"


class Phase(StrEnum):
    BUILD = "BUILD"
    TEST = "TEST"
    PROFILE = "PROFILE"


@dataclass(frozen=True)
class ErrorInfo:
    error_type: ErrorType
    phase: Phase
    severity: int
    recoverable: bool
    hint: str
    rule: str
    excerpt: str
    signature: str
    transient: bool

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["error_type"], d["phase"] = str(self.error_type), str(self.phase)
        return d


ALL_PHASES = frozenset(Phase)
_M = re.MULTILINE


@dataclass(frozen=True)
class Rule:
    """One row of the table.  ``error_type`` None means: by phase (see :data:`PHASE_TYPE`).
    ``key`` finds the text that identifies the error (for the signature; default: the
    pattern's match), ``show`` extra lines for the excerpt, ``on_success`` rules apply
    only when the phase exited 0 (warnings)."""

    name: str
    pattern: re.Pattern[str]
    error_type: ErrorType | None
    severity: int
    hint: str
    recoverable: bool = True
    transient: bool = False
    phases: frozenset[Phase] = ALL_PHASES
    key: re.Pattern[str] | None = None
    show: re.Pattern[str] | None = None
    on_success: bool = False


def rule(name: str, pattern: str, error_type: ErrorType | None, severity: int, hint: str, *,
         key: str | None = None, show: str | None = None, **options: Any) -> Rule:
    """A :class:`Rule` from regex source; ``options`` are Rule's remaining fields."""
    return Rule(name, re.compile(pattern, _M), error_type, severity, hint,
                key=re.compile(key, _M) if key else None,
                show=re.compile(show, _M) if show else None, **options)


PHASE_TYPE = {Phase.BUILD: ErrorType.COMPILATION, Phase.TEST: ErrorType.RUNTIME,
              Phase.PROFILE: ErrorType.RUNTIME}

_C, _R, _L = ErrorType.COMPILATION, ErrorType.RUNTIME, ErrorType.LOGIC
_O = "[`'‘\"]"  # opening quote: gcc prints ‘x’ in UTF-8 locales, 'x' in C, ld `x'
_Q = "[`'’\"]"  # closing quote
_PY = r"^(?:E\s+)?"  # pytest prefixes exception lines with "E   "
_SAN_KEY = r"(?:Address|Leak)Sanitizer: [\w-]+|^\s*#[01] 0x[0-9a-f]+ in \S+"
_VG_KEY = (r"^==\d+== (?:Invalid|Mismatched|Conditional|Use of|Syscall|Source and).*$"
           r"|^==\d+== +at 0x[0-9A-Fa-f]+: \S+")


def py(name: str, exceptions: str, error_type: ErrorType, severity: int, hint: str) -> Rule:
    """A rule for a Python exception line, plain or in pytest's "E   " form."""
    pattern = _PY + rf"(?P<exc>{exceptions})(?::[ \t]*(?P<msg>.*))?$"
    return rule(name, pattern, error_type, severity, hint)


RULES: tuple[Rule, ...] = (
    # environment: no code change fixes these
    rule("env.disk_full", r"No space left on device|Disk quota exceeded", None, 5,
         "The disk is full: free space on the build machine, then rerun",
         recoverable=False, transient=True),
    rule("env.resource_unavailable", r"Resource temporarily unavailable|Too many open files in system",
         None, 5, "The machine is out of processes or file handles; rerun when it has recovered",
         recoverable=False, transient=True),
    rule("env.permission_denied", r"Permission denied|Operation not permitted", None, 5,
         "Permission denied: the workspace or a tool is not accessible; check the sandbox setup",
         recoverable=False),
    rule("env.tool_missing",
         r"^(?:(?:/bin/sh|sh|bash): (?:line \d+: |\d+: )?)?(?P<tool>[\w.+/-]+): (?:command )?not found$",
         None, 5,
         "The tool {tool} is not installed here: install it or build with a tool that exists",
         recoverable=False),
    rule("cuda.no_device",
         r"no CUDA-capable device is detected|CUDA driver version is insufficient|cudaErrorNoDevice"
         r"|cudaErrorInsufficientDriver|CUDA_ERROR_NO_DEVICE|Found no NVIDIA driver", _R, 5,
         "No usable GPU or CUDA driver on this machine: run GPU tests where a GPU is available",
         recoverable=False),
    rule("cuda.out_of_memory",
         r"CUDA error: out of memory|CUDA out of memory|cudaErrorMemoryAllocation"
         r"|CUDA_ERROR_OUT_OF_MEMORY", _R, 3,
         "The GPU ran out of memory: allocate less (smaller batches, free buffers) or check "
         "the size computation", transient=True),
    rule("cuda.illegal_address",
         r"an illegal memory access was encountered|misaligned address|unspecified launch failure"
         r"|cudaErrorIllegalAddress|CUDA_ERROR_ILLEGAL_ADDRESS|cudaErrorLaunchFailure", _R, 4,
         "A kernel accessed memory out of bounds: guard every index with `if (i < n)`, check "
         "grid size and allocation sizes; compute-sanitizer shows the faulting line"),
    rule("cuda.launch_config",
         r"invalid configuration argument|too many resources requested for launch"
         r"|cudaErrorInvalidConfiguration|cudaErrorLaunchOutOfResources", _R, 3,
         "The kernel launch configuration is invalid: at most 1024 threads per block, fewer "
         "registers or shared memory per block"),
    rule("cuda.runtime_error", r"CUDA error\b[^:\n]*: *(?P<msg>.+)$", _R, 3,
         "A CUDA call failed: {msg}; check the result of every CUDA call and kernel launch"),
    # memory safety
    rule("asan.buffer_overflow",
         r"ERROR: AddressSanitizer: (?P<kind>(?:heap|stack|global|dynamic-stack)-buffer-(?:overflow|underflow))",
         _R, 4, "AddressSanitizer: {kind}: an index runs past an array; check loop bounds "
         "(< versus <=) and allocation sizes at the first frame in your code", key=_SAN_KEY),
    rule("asan.use_after_free",
         r"ERROR: AddressSanitizer: (?P<kind>heap-use-after-free|stack-use-after-(?:return|scope)"
         r"|attempting double-free|attempting free on address which was not malloc)", _R, 4,
         "AddressSanitizer: {kind}: memory is used after its lifetime ended; check who owns "
         "and frees it", key=_SAN_KEY),
    rule("asan.other", r"ERROR: AddressSanitizer: (?P<kind>[\w-]+)", _R, 4,
         "AddressSanitizer reports {kind}: see the first stack frame in your code", key=_SAN_KEY),
    rule("lsan.leak", r"ERROR: LeakSanitizer: detected memory leaks", _R, 3,
         "Memory leak: free (or use RAII / smart pointers for) what the stack shows allocated",
         key=_SAN_KEY),
    rule("ubsan.runtime_error", r"^(?P<loc>\S+?:\d+:\d+): runtime error: (?P<msg>.+)$", _R, 4,
         "Undefined behaviour at {loc}: {msg}", key=r"runtime error: .+"),
    rule("valgrind.memcheck",
         r"^==\d+== (?P<what>Invalid (?:read|write|free\(\)|delete)|Mismatched free|Conditional jump "
         r"or move depends on uninitialised|Use of uninitialised value|Syscall param \S+ points to "
         r"uninitialised|Source and destination overlap)", _R, 4,
         "valgrind: {what}: fix the access at the first `at` frame in your code", key=_VG_KEY),
    rule("valgrind.leak", r"definitely lost: [1-9][\d,]* bytes", _R, 3,
         "valgrind found leaked memory: free what was allocated", key=_VG_KEY),
    rule("valgrind.errors", r"ERROR SUMMARY: [1-9]\d* errors?", _R, 4,
         "valgrind reports memory errors: see the excerpt", key=_VG_KEY),
    rule("libc.heap_corruption",
         r"double free or corruption|free\(\): invalid (?:pointer|size)|malloc\(\): (?:corrupted|memory "
         r"corruption)|corrupted size vs\. prev_size|stack smashing detected", _R, 4,
         "The heap or stack is corrupted (double free, out-of-bounds write): build with "
         "-fsanitize=address to find the first bad access"),
    # run-time failures with a clear message
    rule("c.assert", r"Assertion [`'‘](?P<expr>.+)[’'] failed", _L, 3,
         "The assertion `{expr}` failed: the code computes a wrong value there"),
    rule("cpp.uncaught_exception", r"terminate called after throwing an instance of '(?P<exc>[^']+)'",
         _R, 3, "Uncaught C++ exception {exc}: fix the operation that throws (see what():) or "
         "catch it", key=r"terminate called .*|what\(\): .*"),
    # compilers; root causes first (a missing header causes a cascade of undeclared names)
    rule("cc.missing_include",
         rf"fatal error: {_O}?(?P<header>[\w./+-]+){_Q}?:? (?:No such file or directory|file not found)",
         _C, 2, "The header {header} does not exist: include the right header, add its -I "
         "directory, or drop the include"),
    py("python.syntax_error", "SyntaxError|IndentationError|TabError", _C, 2,
       "Fix the Python syntax at the line shown. {exc}: {msg}"),
    rule("nvcc.unsupported_arch", r"Unsupported gpu architecture '(?P<arch>\w+)'", _C, 2,
         "nvcc does not support {arch}: use -arch=native or a current one such as sm_80 or sm_90"),
    rule("nvcc.host_from_device",
         r'calling a __host__ function\("(?P<fn>[^"]*)"\) from a __(?P<kind>global|device)__ '
         r'function\("(?P<caller>[^"]*)"\) is not allowed', _C, 2,
         "{fn} is host-only but called from the __{kind}__ function {caller}: mark it "
         "__device__ (or __host__ __device__) or use a device-side equivalent"),
    rule("nvcc.identifier_undefined", r'error: identifier "(?P<name>\w+)" is undefined', _C, 2,
         "{name} is not declared in this CUDA code: declare it, fix the spelling or include its header"),
    rule("ptxas.shared_memory",
         r"ptxas error\s*: Entry function '(?P<fn>[^']+)' uses too much shared data", _C, 3,
         "Kernel {fn} uses more than 48 KB of static __shared__ memory: shrink the tile or use "
         "dynamic shared memory (extern __shared__ and cudaFuncSetAttribute)"),
    rule("ptxas.error", r"ptxas (?:error|fatal)\s*: (?P<msg>.+)$", _C, 3,
         "ptxas rejected the device code: {msg}"),
    rule("cc.syntax_error",
         rf"error: (?P<msg>expected .+|stray {_O}.+|missing terminating .+|extra tokens .+)$", _C, 2,
         "Syntax error: {msg}; look at the end of the previous line for a missing ';', bracket or quote"),
    rule("cc.undeclared",
         rf"error: {_O}(?P<name>[\w:~]+){_Q} (?:was not declared in this scope|undeclared|has not been "
         r"declared|is not a member of|does not name a type)", _C, 2,
         "{name} is not declared: declare it, fix the spelling or include its header"),
    rule("clang.undeclared",
         rf"error: (?:use of undeclared identifier|unknown type name|no member named) {_O}(?P<name>[\w:~]+){_Q}",
         _C, 2, "{name} is not declared: declare it, fix the spelling or include its header"),
    rule("cc.no_matching_function",
         rf"error: no matching (?:member )?function for call to {_O}(?P<call>[^’'`\n]+){_Q}", _C, 2,
         "No overload of {call} takes these argument types: convert the arguments or call the right function"),
    rule("cc.type_error",
         r"error: (?P<msg>(?:cannot convert|invalid conversion from|invalid operands|incompatible types?"
         r"|no viable conversion|no match for|cannot initialize|conversion from|invalid use of"
         r"|request for member|too (?:few|many) arguments).*)$", _C, 2, "Type error: {msg}"),
    rule("cc.warning_as_error", r"error: (?P<msg>.+?) \[-Werror(?:[=,][\w+=,-]+)?\]", _C, 2,
         "A warning is treated as an error ({msg}): fix the code, do not silence the warning"),
    rule("nvcc.error", r"^(?P<loc>\S+\(\d+\)): error: (?P<msg>.+)$", _C, 2, "nvcc: {msg}",
         key=r"error: .+"),
    rule("nvcc.fatal", r"^nvcc fatal\s*: (?P<msg>.+)$", _C, 2, "nvcc: {msg}"),
    rule("cc.error", r"^(?P<loc>[^\s:]+:\d+(?::\d+)?): (?:fatal )?error: (?P<msg>.+)$", _C, 2,
         "Compile error at {loc}: {msg}", key=r"error: .+"),
    # linker
    rule("ld.cuda_library",
         rf"undefined reference to {_O}(?P<sym>(?P<lib>cufft|cublas|curand|cusparse|cusolver|nvrtc)\w*)",
         _C, 2, "Add -l{lib} to linker flags: {sym} is defined in lib{lib}",
         key=rf"undefined reference to {_O}[^’'`\n]+"),
    rule("ld.cuda_runtime", rf"undefined reference to {_O}(?P<sym>_*cuda\w+)", _C, 2,
         "Add -lcudart to linker flags: the CUDA runtime ({sym}) is not linked; or link with nvcc",
         key=rf"undefined reference to {_O}[^’'`\n]+"),
    rule("ld.libm",
         rf"undefined reference to {_O}(?P<sym>(?:sqrt|cbrt|pow|exp2?|log(?:2|10)?|sin|cos|tan|atan2"
         rf"|floor|ceil|fmod|round|hypot)f?){_Q}", _C, 2,
         "Add -lm to linker flags: {sym} is in the math library"),
    rule("ld.undefined_reference",
         rf"undefined (?:reference to {_O}|symbol: )(?P<sym>[^’'`\n]+)", _C, 2,
         "{sym} is declared but never defined: define it, add its source file to the build, or "
         "link the library that has it"),
    rule("ld.multiple_definition", rf"multiple definition of {_O}(?P<sym>[^’'`\n]+){_Q}", _C, 2,
         "{sym} is defined in more than one file: keep one definition; declare variables extern "
         "in headers, make functions in headers inline"),
    rule("ld.missing_library", r"cannot find -l(?P<lib>[^\s:]+)", _C, 2,
         "The library lib{lib} is not installed: drop -l{lib} and use what the system has"),
    rule("ld.failed", r"ld returned \d+ exit status|linker command failed", _C, 2,
         "Linking failed: see the missing or duplicate symbols in the excerpt"),
    # Python exceptions; a crash in the code under test outranks a failed check, so
    # AssertionError comes after the specific ones
    py("python.import_error", "ModuleNotFoundError|ImportError", _R, 2,
       "Use only the standard library or installed packages and check the names. {exc}: {msg}"),
    py("python.name_error", "NameError|UnboundLocalError", _R, 2,
       "Define the name before use or fix its spelling. {exc}: {msg}"),
    py("python.attribute_error", "AttributeError", _R, 2,
       "Use an attribute or method the object really has. {exc}: {msg}"),
    py("python.type_error", "TypeError", _R, 3, "Check argument types and counts. {exc}: {msg}"),
    py("python.index_error", "IndexError", _R, 3,
       "An index runs past the sequence: check bounds and off-by-one. {exc}: {msg}"),
    py("python.key_error", "KeyError", _R, 3,
       "A key is missing: check the key name or use .get(). {exc}: {msg}"),
    py("python.zero_division", "ZeroDivisionError", _R, 3,
       "Guard the division against a zero divisor. {exc}: {msg}"),
    py("python.recursion_error", "RecursionError", _R, 3,
       "Infinite or too deep recursion: fix the base case or make it iterative. {exc}: {msg}"),
    py("python.memory_error", "MemoryError", _R, 3,
       "The code allocates far too much: check the size computation. {exc}: {msg}"),
    py("python.assertion_error", "AssertionError", _L, 3,
       "A check failed, the code computes a wrong result. {exc}: {msg}"),
    py("python.exception", r"(?:\w+\.)*\w+(?:Error|Exception)", _R, 3, "{exc}: {msg}"),
    # test reports
    rule("pytest.collection_error", r"ERROR collecting (?P<file>\S+)", _R, 2,
         "pytest could not import {file}: fix the error raised while importing it"),
    rule("pytest.no_tests", r"^(?:=+ )?no tests ran\b|^collected 0 items", _L, 3,
         "pytest found no tests: name files test_*.py and functions test_*"),
    rule("pytest.failed", r"\b(?P<failed>[1-9]\d*) failed\b.* in [\d.]+s", _L, 3,
         "{failed} test(s) failed: the results differ from what the tests expect",
         key=r"^FAILED \S+", show=r"^(?:E|>) .*$"),
    rule("unittest.failed", r"^FAILED \((?P<counts>[^)]*)\)", _L, 3,
         "unittest reports {counts}: the results differ from what the tests expect",
         key=r"^(?:FAIL|ERROR): \S+ \([\w.]+\)"),
    rule("gtest.failed", r"^\[  FAILED  \] (?P<failed>\d+) tests?, listed below", _L, 3,
         "{failed} GoogleTest test(s) failed: the results differ from what the tests expect",
         key=r"^\[  FAILED  \] [\w/.]+$", show=r"^\S+:\d+: Failure$"),
    # kisystem's own harness (kisystem.loop.humaneval): "FAILED test N of T:" + details
    rule("harness.load_syntax", r"^FAILED: cannot load \S+ from \S+: (?P<exc>SyntaxError|IndentationError"
         r"|TabError): (?P<msg>.*)$", _C, 2, "Fix the Python syntax. {exc}: {msg}"),
    rule("harness.load_failed", r"^FAILED: cannot load \S+ from (?P<file>\S+): (?P<exc>\w+): (?P<msg>.*)$",
         _R, 2, "{file} fails on import. {exc}: {msg}"),
    rule("harness.raised", r"^\s+raised (?P<exc>\w+): (?P<msg>.*)$", _R, 3,
         "The code raised on a test input. {exc}: {msg}"),
    rule("harness.test_timeout", r"^\s+timed out after [\d.]+ s$", _R, 3,
         "A test ran into its own time limit: an infinite loop or a far too slow algorithm"),
    rule("kisystem.tests", r"KISYSTEM_TESTS passed=(?P<passed>\d+) total=(?P<total>\d+)", _L, 3,
         "{passed} of {total} tests passed: fix the failing cases", key=r"^FAILED test .*\n.*"),
    # warnings matter only when nothing failed
    rule("cc.warning", r"^(?P<loc>\S+?(?::\d+:\d+|\(\d+\))): warning(?: #[\w-]+)?: (?P<msg>.+)$", _C, 1,
         "Compiler warning at {loc}: {msg}", key=r"warning(?: #[\w-]+)?: .+",
         phases=frozenset({Phase.BUILD}), on_success=True),
)


@dataclass(frozen=True)
class _Outcome:
    """A rule-like verdict for the non-table steps (timeouts, signals, fallbacks)."""

    name: str
    error_type: ErrorType | None
    severity: int
    hint: str
    recoverable: bool = True
    transient: bool = False


_TIMEOUT = {
    Phase.BUILD: _Outcome("timeout.build", _C, 3, "The build timed out: avoid huge template or "
                          "constexpr work and heavy unrolling; split the code", transient=True),
    Phase.TEST: _Outcome("timeout.test", _R, 3, "The tests timed out: likely an infinite loop, a "
                         "deadlock or a read from stdin; check loop exit conditions", transient=True),
    Phase.PROFILE: _Outcome("timeout.profile", ErrorType.PERFORMANCE, 3, "The benchmark did not "
                            "finish in time: the code is far too slow (or hangs) for this input "
                            "size", transient=True),
}
_SIGNALS: dict[int, _Outcome] = {
    _signal.SIGSEGV: _Outcome("signal.sigsegv", _R, 3, "Segmentation fault: a null or dangling "
                              "pointer, an out-of-bounds index, or a stack overflow from deep recursion"),
    _signal.SIGABRT: _Outcome("signal.sigabrt", _R, 3, "The program aborted (abort(), a failed "
                              "assert or an uncaught exception)"),
    _signal.SIGFPE: _Outcome("signal.sigfpe", _R, 3, "Arithmetic exception: an integer division or "
                             "modulo by zero"),
    _signal.SIGBUS: _Outcome("signal.sigbus", _R, 4, "Bus error: a misaligned or out-of-range memory access"),
    _signal.SIGILL: _Outcome("signal.sigill", _R, 3, "Illegal instruction: code built for CPU "
                             "features this machine lacks (-march) or unreachable code reached"),
    _signal.SIGKILL: _Outcome("signal.sigkill", None, 3, "Killed from outside (out of memory or a "
                              "limit): if it recurs, use less memory", transient=True),
    _signal.SIGTERM: _Outcome("signal.sigterm", None, 3, "Terminated from outside", transient=True),
    _signal.SIGXFSZ: _Outcome("signal.sigxfsz", _R, 3, "The program wrote more than the file size "
                              "limit: write less output"),
}
_SIGNAL_TEXT = (
    (_signal.SIGKILL, re.compile(r"Killed signal terminated program|^(?:\S.*: line \d+: +\d+ )?Killed\b", _M)),
    (_signal.SIGSEGV, re.compile(r"Segmentation fault")),
    (_signal.SIGFPE, re.compile(r"Floating point exception")),
    (_signal.SIGBUS, re.compile(r"Bus error")),
    (_signal.SIGILL, re.compile(r"Illegal instruction")),
    (_signal.SIGABRT, re.compile(r"\bAborted\b")),
    (_signal.SIGXCPU, re.compile(r"CPU time limit exceeded")),
    (_signal.SIGXFSZ, re.compile(r"File size limit exceeded")),
)
_FALLBACK = {  # (phase, exited 0)
    (Phase.BUILD, False): _Outcome("fallback.build", _C, 3, "The build failed; see the excerpt"),
    (Phase.BUILD, True): _Outcome("fallback.build_ok", _C, 1, "The build succeeded; nothing to fix"),
    (Phase.TEST, False): _Outcome("fallback.test", _L, 3, "The tests failed; see the excerpt"),
    (Phase.TEST, True): _Outcome("fallback.test_ok", _L, 3, "The tests did not pass; see the excerpt"),
    (Phase.PROFILE, False): _Outcome("fallback.profile", _R, 3, "The program failed while profiling; "
                                     "see the excerpt"),
    (Phase.PROFILE, True): _Outcome("fallback.profile_ok", ErrorType.PERFORMANCE, 2, "The code "
                                    "works but misses the performance target: reduce memory "
                                    "traffic and work per element"),
}
_TOOL_MISSING = _Outcome("env.tool_missing", None, 5, "A command was not found (exit 127): use "
                         "tools that exist here", recoverable=False)

EXCERPT_MAX = 1500
_LINE_MAX = 200
_BEFORE, _AFTER, _ANCHORS, _TAIL = 3, 2, 6, 12
_TEXT_MAX, _LINE_CAP = 256 * 1024, 1000  # the sandbox keeps 256 KiB
_LONG_LINE = re.compile(f"[^\n]{{{_LINE_CAP + 1},}}")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class ErrorCategorizer:
    """Classifies a failed phase.  Stateless; ``rules`` replaces the default table."""

    def __init__(self, rules: tuple[Rule, ...] = RULES) -> None:
        self.rules = rules

    def categorize(self, phase: Phase | str, exit_status: int | None, output: str, *,
                   timed_out: bool = False, signal: int | None = None) -> ErrorInfo:
        phase = Phase(phase.upper())
        text = _clean(output)
        if timed_out or exit_status == 124:
            return _verdict(_TIMEOUT[phase], phase, [], _tail(text))
        sig = _signal_of(exit_status, signal, text)
        if sig in (_signal.SIGKILL, _signal.SIGXCPU):  # output cut short: the kill is the news
            return _signalled(phase, sig, text)
        found = self._match(phase, exit_status, text)
        if found:
            return found
        if sig:
            return _signalled(phase, sig, text)
        return self._fallback(phase, exit_status, text)

    def _match(self, phase: Phase, exit_status: int | None, text: str) -> ErrorInfo | None:
        for r in self.rules:
            if phase not in r.phases or (r.on_success and exit_status != 0):
                continue
            m = r.pattern.search(text)
            if m:
                return _from_rule(r, m, phase, text)
        return None

    def _fallback(self, phase: Phase, exit_status: int | None, text: str) -> ErrorInfo:
        if exit_status == 127:
            return _verdict(_TOOL_MISSING, phase, [], _tail(text))
        lines = _tail(text)
        keys = [line for _, line in lines[-5:]]
        return _verdict(_FALLBACK[(phase, exit_status == 0)], phase, keys, lines)


def _signalled(phase: Phase, sig: int, text: str) -> ErrorInfo:
    """A death by signal; SIGXCPU (the sandbox's CPU-time limit) counts as a timeout."""
    outcome = _TIMEOUT[phase] if sig == _signal.SIGXCPU else _SIGNALS.get(
        sig, _Outcome(f"signal.{sig}", None, 3, f"Killed by signal {sig}"))
    return _verdict(outcome, phase, [], _tail(text))


def _from_rule(r: Rule, m: re.Match[str], phase: Phase, text: str) -> ErrorInfo:
    key_matches = list(r.key.finditer(text)) if r.key else []
    keys = [k.group(0) for k in key_matches] or [m.group(0)]
    shown = [m, *key_matches, *(r.show.finditer(text) if r.show else ())]
    groups = {k: (v or "").strip() for k, v in m.groupdict().items()}
    outcome = _Outcome(r.name, r.error_type, r.severity, r.hint.format_map(groups).rstrip(" :;"),
                       r.recoverable, r.transient)
    return _verdict(outcome, phase, keys, _around(text, [s.start() for s in shown]))


def _verdict(o: _Outcome, phase: Phase, keys: list[str],
             lines: list[tuple[int, str]]) -> ErrorInfo:
    return ErrorInfo(
        error_type=o.error_type or PHASE_TYPE[phase], phase=phase, severity=o.severity,
        recoverable=o.recoverable, hint=o.hint, rule=o.name, excerpt=_render(lines),
        signature=signature(o.name, phase, keys), transient=o.transient)


# --- signals ---------------------------------------------------------------------------

def _signal_of(exit_status: int | None, signal: int | None, text: str) -> int | None:
    if signal:
        return signal
    if exit_status == 0:  # a process that exits 0 was not killed, whatever it printed
        return None
    return _signal_from_status(exit_status) or _signal_from_text(text)


def _signal_from_status(exit_status: int | None) -> int | None:
    if exit_status is None:
        return None
    if exit_status < 0:  # subprocess: -N means killed by signal N
        return -exit_status
    if 128 < exit_status < 160:  # a shell reports signal N as 128+N
        return exit_status - 128
    return None


def _signal_from_text(text: str) -> int | None:
    return next((sig for sig, rx in _SIGNAL_TEXT if rx.search(text)), None)


# --- signature -------------------------------------------------------------------------

_NORMALIZE = (
    (re.compile(r"[‘’`´“”]"), "'"),
    (re.compile(r"(?:[\w.~+-]*/)+(?=[\w.+-])"), ""),  # directories: keep the base name
    (re.compile(r"\bcc\w{6}\.o\b|-[0-9a-f]{6}\.o\b"), "TMP.o"),  # gcc / clang temp objects
    (re.compile(r"0x[0-9a-fA-F]+"), "0x"),
    (re.compile(r"\d+(?:\.\d+)?(?:e[-+]?\d+)?"), "N"),  # line numbers, pids, timings, counts
    (re.compile(r"\s+"), " "),
)
_KEY_MAX = 300  # bounds the cost of _NORMALIZE on pathological lines


def normalize(line: str) -> str:
    """The text of ``line`` without what varies between runs of the same error."""
    for rx, repl in _NORMALIZE:
        line = rx.sub(repl, line)
    return line.strip()


def signature(rule_name: str, phase: Phase, keys: list[str]) -> str:
    """``rule:hash`` over the normalized, de-duplicated key texts (order does not matter)."""
    body = "\n".join(sorted({normalize(k[:_KEY_MAX]) for k in keys}))
    digest = hashlib.sha1(f"{phase}\n{body}".encode()).hexdigest()[:12]
    return f"{rule_name}:{digest}"


# --- text and excerpt ------------------------------------------------------------------

def _clean(output: str) -> str:
    """Without colours, cut to _TEXT_MAX and lines to _LINE_CAP: some rules scan to the end
    of the line from each match of their prefix, quadratic on huge lines."""
    text = _ANSI.sub("", output).replace("\r\n", "\n")
    if len(text) > _TEXT_MAX:  # the start has the first error, the end the summary
        half = _TEXT_MAX // 2
        text = f"{text[:half]}\n[...]\n{text[-half:]}"
    return _LONG_LINE.sub(lambda m: m[0][:_LINE_CAP] + " [...]", text)


def _around(text: str, positions: list[int]) -> list[tuple[int, str]]:
    """Numbered lines around the first few anchor positions."""
    lines = text.split("\n")
    anchors: set[int] = set()
    line, prev = 0, 0
    for p in sorted(positions):
        line, prev = line + text.count("\n", prev, p), p
        anchors.add(line)
        if len(anchors) == _ANCHORS:
            break
    picked = {i for a in anchors for i in range(a - _BEFORE, a + _AFTER + 1) if 0 <= i < len(lines)}
    return [(i, lines[i]) for i in sorted(picked)]


def _tail(text: str) -> list[tuple[int, str]]:
    numbered = [(i, line) for i, line in enumerate(text.split("\n")) if line.strip()]
    return numbered[-_TAIL:]


def _render(lines: list[tuple[int, str]]) -> str:
    out: list[str] = []
    prev = None
    for i, line in lines:
        if prev is not None and i != prev + 1:
            out.append("...")
        out.append(line[:_LINE_MAX])
        prev = i
    text = "\n".join(out).strip("\n") or "(no output)"
    return text if len(text) <= EXCERPT_MAX else text[: EXCERPT_MAX - 4] + "\n..."
