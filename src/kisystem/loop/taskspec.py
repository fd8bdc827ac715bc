"""Task specs: one TOML file per task, loaded into frozen dataclasses.

A spec names the task (``id``), its routing ``domain``, ``language`` and ``prompt``; the
files the model starts from (``[starter]``, it may change them) and the files it may
read but never overwrite (``[fixed]``, or ``fixed_from = ["path", ...]`` read relative
to the spec file); where a single unnamed code block goes (``solution_file``); and the
``[build]``, ``[test]`` and ``[profile]`` phases, each a ``command`` run in the
workspace with a ``timeout_s``.  ``[test]`` is required; ``[build]`` is optional and
defaults to ``python -m py_compile <solution_file>`` for Python; ``[profile]`` is
optional and may carry ``reference_time_s`` for the performance part of the score.
``[completion]`` (``prefix``, ``stop``) serves base models in completion mode.

``[judge]`` makes the result trustworthy: a judge outside the candidate's process
decides it (see :mod:`kisystem.sandbox.judge`).  ``kind = "calls"`` (Python) calls
``entry_point`` with the inputs of a ``check(candidate)`` function in the judge's
``tests`` file and compares the answers; ``kind = "compare"`` runs the candidate's
program (``[test]``/``[profile]`` command + ``test SEED`` / ``bench SEED``) and the
reference program (``judge.command``, built by ``judge.build``) on the same fresh input
and compares their outputs, within ``rel_tol``/``abs_tol``.  Judge-only files
(``[judge.files]`` or ``judge.files_from``) are never in the candidate's view.  A spec
without ``[judge]`` is judged by its own test output: self-reported, marked untrusted.

Every problem raises :class:`TaskSpecError` with one line naming the file and field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from kisystem.domains import DEFAULT_DOMAINS
from kisystem.errors import UsageError
from kisystem.loop.extract import safe_relpath

LANGUAGES = ("python", "c", "cpp", "cuda", "markdown", "other")
MODE_HINTS = ("chat", "completion")
DEFAULT_SOLUTION_FILE = {"python": "solution.py", "c": "solution.c", "cpp": "solution.cpp",
                         "cuda": "solution.cu", "markdown": "README.md", "other": "solution.txt"}
DEFAULT_TIMEOUT_S = {"build": 300.0, "test": 120.0, "profile": 900.0}
_ID_RE = re.compile(r"^[A-Za-z0-9_.-]+$")
_TOP_FIELDS = frozenset({"id", "domain", "language", "prompt", "starter", "fixed", "fixed_from",
                         "solution_file", "mode_hint", "build", "test", "profile", "target_score",
                         "max_iterations", "priority", "completion", "judge"})
_PHASE_FIELDS = frozenset({"command", "timeout_s"})
_PROFILE_FIELDS = _PHASE_FIELDS | {"reference_time_s"}
_COMPLETION_FIELDS = frozenset({"prefix", "stop"})
JUDGE_KINDS = ("calls", "compare")
_JUDGE_FIELDS = {
    "calls": frozenset({"kind", "files", "files_from", "entry_point", "tests", "reference"}),
    "compare": frozenset({"kind", "files", "files_from", "build", "build_timeout_s", "command", "rel_tol",
                          "abs_tol"}),
}
SELF_REPORTED = "self-reported"
CALLS_TEST_COMMAND = "(judge: calls)"  # the calls judge runs the candidate itself; [test] may be left out


class TaskSpecError(UsageError):
    """A task spec file is missing, unreadable or invalid."""


@dataclass(frozen=True)
class PhaseSpec:
    command: str
    timeout_s: float


@dataclass(frozen=True)
class ProfileSpec(PhaseSpec):
    reference_time_s: float | None = None


@dataclass(frozen=True)
class CompletionSpec:
    prefix: str
    stop: tuple[str, ...] = ()


@dataclass(frozen=True)
class JudgeSpec:
    """How a trusted judge decides the result (see :mod:`kisystem.sandbox.judge`).

    ``files`` are the judge's own files (hidden tests, reference), never in the
    candidate's view; the judge also sees the task's fixed files.
    """

    kind: str  # one of JUDGE_KINDS
    files: Mapping[str, str] = field(default_factory=dict)
    entry_point: str | None = None  # calls: the function the judge calls
    tests: str = "tests.py"  # calls: defines check(candidate)
    reference: str = "reference.py"  # calls: defines entry_point; records the calls
    build: PhaseSpec | None = None  # compare: builds the reference program in the judge's directory
    command: str | None = None  # compare: the reference program (the judge appends "test SEED" / "bench SEED")
    rel_tol: float = 0.0  # compare: numbers within abs_tol + rel_tol * |reference| count as equal
    abs_tol: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))


@dataclass(frozen=True)
class TaskSpec:
    id: str
    domain: str
    language: str
    prompt: str
    solution_file: str
    test: PhaseSpec
    build: PhaseSpec | None = None
    profile: ProfileSpec | None = None
    starter: Mapping[str, str] = field(default_factory=dict)
    fixed: Mapping[str, str] = field(default_factory=dict)
    mode_hint: str | None = None
    target_score: int | None = None
    max_iterations: int | None = None
    priority: float | None = None
    completion: CompletionSpec | None = None
    judge: JudgeSpec | None = None

    def __post_init__(self) -> None:
        for name in ("starter", "fixed"):  # read-only views, so the frozen spec stays frozen
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    @property
    def trusted(self) -> bool:
        """Whether a judge decides the result; without one the program reports its own."""
        return self.judge is not None

    @property
    def judged_by(self) -> str:
        """``calls`` or ``compare`` (a trusted judge), else ``self-reported`` (untrusted)."""
        return self.judge.kind if self.judge is not None else SELF_REPORTED


def load_task(path: Path, known_domains: Iterable[str] = DEFAULT_DOMAINS) -> TaskSpec:
    """Read and validate one spec file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise TaskSpecError(f"{path}: cannot read: {err.strerror or err}") from None
    except UnicodeDecodeError:
        raise TaskSpecError(f"{path}: cannot read: not UTF-8 text") from None
    return load_task_text(text, path, known_domains)


def load_task_text(text: str, label: str | Path, known_domains: Iterable[str] = DEFAULT_DOMAINS) -> TaskSpec:
    """A spec from TOML text; ``label`` names it in errors and anchors ``fixed_from`` paths."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise TaskSpecError(f"{label}: invalid TOML: {err}") from None
    return _Parser(Path(label), tuple(known_domains)).spec(data)


def load_tasks(paths: Iterable[Path], known_domains: Iterable[str] = DEFAULT_DOMAINS) -> list[TaskSpec]:
    """Specs from files and directories (every ``*.toml`` directly inside, sorted); ids must be unique."""
    domains = tuple(known_domains)
    specs: list[TaskSpec] = []
    seen: dict[str, Path] = {}
    for file in expand_task_paths(paths):
        spec = load_task(file, domains)
        if spec.id in seen:
            raise TaskSpecError(f"{file}: field 'id': {spec.id!r} is already used by {seen[spec.id]}")
        seen[spec.id] = file
        specs.append(spec)
    return specs


def expand_task_paths(paths: Iterable[Path]) -> list[Path]:
    """Files as given; directories replaced by the ``*.toml`` files directly inside, sorted
    (a directory without any is an error)."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.glob("*.toml") if p.is_file())
            if not found:
                raise TaskSpecError(f"{path}: no task specs (*.toml) in this folder")
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            raise TaskSpecError(f"{path}: no such file or directory")
    return files


def dump_task(spec: TaskSpec) -> str:
    """The spec as TOML text that :func:`load_task` reads back to an equal spec."""
    doc: dict[str, Any] = {"id": spec.id, "domain": spec.domain, "language": spec.language,
                           "solution_file": spec.solution_file}
    for key in ("mode_hint", "target_score", "max_iterations", "priority"):
        if getattr(spec, key) is not None:
            doc[key] = getattr(spec, key)
    doc["prompt"] = spec.prompt
    for key in ("starter", "fixed"):
        if getattr(spec, key):
            doc[key] = dict(getattr(spec, key))
    for key in ("build", "test", "profile"):
        phase = getattr(spec, key)
        if phase is not None:
            doc[key] = {k: v for k, v in vars(phase).items() if v is not None}
    if spec.test.command == CALLS_TEST_COMMAND:  # the calls judge runs the candidate itself
        del doc["test"]["command"]
    if spec.completion is not None:
        doc["completion"] = {"prefix": spec.completion.prefix, "stop": list(spec.completion.stop)}
    if spec.judge is not None:
        doc["judge"] = _judge_doc(spec.judge)
    return dumps_toml(doc)


def _judge_doc(judge: JudgeSpec) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": judge.kind}
    if judge.kind == "calls":
        doc.update(entry_point=judge.entry_point, tests=judge.tests, reference=judge.reference)
    else:
        assert judge.build is not None
        doc.update(build=judge.build.command, build_timeout_s=judge.build.timeout_s, command=judge.command,
                   rel_tol=judge.rel_tol, abs_tol=judge.abs_tol)
    if judge.files:
        doc["files"] = dict(judge.files)
    return doc


class _Parser:
    """Validates the decoded TOML of one file; every error names ``path`` and the field."""

    def __init__(self, path: Path, known_domains: tuple[str, ...]) -> None:
        self.path = path
        self.known_domains = known_domains

    def fail(self, field: str | None, message: str) -> TaskSpecError:
        where = f"{self.path}: field '{field}': " if field else f"{self.path}: "
        return TaskSpecError(where + message)

    def spec(self, data: dict[str, Any]) -> TaskSpec:
        self.unknown(data, _TOP_FIELDS, "")
        task_id, domain = self.task_id(data), self.domain(data)
        language = self.choice(data, "language", LANGUAGES)
        prompt = self.text(data, "prompt")
        solution_file = self.relpath(data.get("solution_file", DEFAULT_SOLUTION_FILE[language]), "solution_file")
        fixed = self.fixed(data)
        if solution_file in fixed:
            raise self.fail("solution_file", f"{solution_file!r} is a fixed file")
        judge = self.judge(data, language)
        return TaskSpec(
            id=task_id, domain=domain, language=language, prompt=prompt,
            solution_file=solution_file, test=self.test_phase(data, judge),
            build=self.phase(data, "build") or _default_build(language, solution_file),
            profile=self.profile(data), starter=self.files(data, "starter", fixed), fixed=fixed,
            mode_hint=self.choice(data, "mode_hint", MODE_HINTS, required=False),
            target_score=self.integer(data, "target_score", 0, 100),
            max_iterations=self.integer(data, "max_iterations", 1, 50),
            priority=self.number(data, "priority", 0, 100, "priority"),
            completion=self.completion(data, language, prompt), judge=judge,
        )

    def unknown(self, table: Mapping[str, Any], allowed: Iterable[str], prefix: str) -> None:
        for key in table:
            if key not in allowed:
                raise self.fail(None, f"unknown field '{prefix}{key}'")

    def required(self, table: Mapping[str, Any], key: str, field: str) -> Any:
        if key not in table:
            raise self.fail(None, f"missing required field '{field}'")
        return table[key]

    def text(self, table: Mapping[str, Any], key: str, field: str | None = None) -> str:
        field = field or key
        value = self.required(table, key, field)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(field, "must be a non-empty string")
        return value

    def task_id(self, data: Mapping[str, Any]) -> str:
        value = self.text(data, "id")
        if not _ID_RE.match(value):
            raise self.fail("id", f"{value!r} may only hold letters, digits, '_', '.' and '-'")
        return value

    def domain(self, data: Mapping[str, Any]) -> str:
        value = self.text(data, "domain")
        if value not in self.known_domains:
            known = ", ".join(self.known_domains)
            raise self.fail("domain", f"{value!r} is not a known domain (known: {known})")
        return value

    def choice(self, data: Mapping[str, Any], key: str, allowed: tuple[str, ...], required: bool = True) -> Any:
        if key not in data and not required:
            return None
        value = self.required(data, key, key)
        if value not in allowed:
            raise self.fail(key, f"{value!r} is not one of {', '.join(allowed)}")
        return value

    def integer(self, data: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(key, f"must be an integer from {low} to {high} (got {value!r})")
        return value

    def number(self, table: Mapping[str, Any], key: str, low: float, high: float | None, field: str) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= (high or float("inf")):
            bounds = f"from {low:g} to {high:g}" if high is not None else f"above {low:g}"
            raise self.fail(field, f"must be a number {bounds} (got {value!r})")
        return float(value)

    def relpath(self, value: Any, field: str) -> str:
        clean = safe_relpath(value) if isinstance(value, str) else None
        if clean is None:
            raise self.fail(field, f"{value!r} must be a relative path inside the workspace")
        return clean

    def table(self, data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
        value = data.get(key)
        if value is not None and not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def files(self, data: Mapping[str, Any], key: str, taken: Mapping[str, str] = MappingProxyType({})) -> dict[str, str]:
        files: dict[str, str] = {}
        for name, content in (self.table(data, key) or {}).items():
            clean = self.relpath(name, f"{key}.{name}")
            if not isinstance(content, str):
                raise self.fail(f"{key}.{name}", "must be a string (the file's content)")
            if clean in taken or clean in files:
                raise self.fail(f"{key}.{name}", f"{clean!r} is given twice")
            files[clean] = content
        return files

    def fixed(self, data: Mapping[str, Any]) -> dict[str, str]:
        return self.files_from(data, "fixed_from", "fixed_from", self.files(data, "fixed"))

    def files_from(self, data: Mapping[str, Any], key: str, field: str, files: dict[str, str]) -> dict[str, str]:
        """``files`` plus the files named by the list ``data[key]``, read relative to the spec."""
        sources = data.get(key, [])
        if not isinstance(sources, list) or not all(isinstance(s, str) for s in sources):
            raise self.fail(field, "must be a list of relative file paths")
        for source in sources:
            clean = self.relpath(source, field)
            if clean in files:
                raise self.fail(field, f"{clean!r} is given twice")
            try:
                files[clean] = (self.path.parent / clean).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                reason = getattr(err, "strerror", None) or "not UTF-8 text"
                raise self.fail(field, f"cannot read {clean!r}: {reason}") from None
        return files

    def test_phase(self, data: Mapping[str, Any], judge: JudgeSpec | None) -> PhaseSpec:
        if judge is None or judge.kind != "calls" or "test" in data and "command" in data["test"]:
            return self.phase(data, "test", required=True)  # type: ignore[return-value]
        table = self.table(data, "test") or {}
        self.unknown(table, {"timeout_s"}, "test.")
        timeout = self.number(table, "timeout_s", 0, None, "test.timeout_s")
        return PhaseSpec(CALLS_TEST_COMMAND, timeout or DEFAULT_TIMEOUT_S["test"])

    def judge(self, data: Mapping[str, Any], language: str) -> JudgeSpec | None:
        table = self.table(data, "judge")
        if table is None:
            return None
        kind = self.choice(table, "kind", JUDGE_KINDS)
        self.unknown(table, _JUDGE_FIELDS[kind], "judge.")
        files = self.files_from(table, "files_from", "judge.files_from", self.files(table, "files"))
        if kind == "calls":
            return self.calls_judge(table, language, files)
        build_timeout = self.number(table, "build_timeout_s", 0, None, "judge.build_timeout_s")
        return JudgeSpec(
            kind, files, build=PhaseSpec(self.text(table, "build", "judge.build"),
                                         build_timeout or DEFAULT_TIMEOUT_S["build"]),
            command=self.text(table, "command", "judge.command"),
            rel_tol=self.number(table, "rel_tol", 0, None, "judge.rel_tol") or 0.0,
            abs_tol=self.number(table, "abs_tol", 0, None, "judge.abs_tol") or 0.0)

    def calls_judge(self, table: Mapping[str, Any], language: str, files: dict[str, str]) -> JudgeSpec:
        if language != "python":
            raise self.fail("judge.kind", f"'calls' judges Python code only (language is {language!r})")
        entry = self.text(table, "entry_point", "judge.entry_point")
        if not entry.isidentifier():
            raise self.fail("judge.entry_point", f"{entry!r} is not a Python identifier")
        names = {key: self.relpath(table.get(key, default), f"judge.{key}")
                 for key, default in (("tests", "tests.py"), ("reference", "reference.py"))}
        for key, name in names.items():
            if name not in files:
                raise self.fail(f"judge.{key}", f"{name!r} is not among the judge's files")
        return JudgeSpec("calls", files, entry_point=entry, **names)

    def phase(self, data: Mapping[str, Any], key: str, required: bool = False) -> PhaseSpec | None:
        table = self.table(data, key)
        if table is None:
            if required:
                raise self.fail(None, f"missing required field '{key}'")
            return None
        self.unknown(table, _PROFILE_FIELDS if key == "profile" else _PHASE_FIELDS, f"{key}.")
        command = self.text(table, "command", f"{key}.command")
        timeout = self.number(table, "timeout_s", 0, None, f"{key}.timeout_s")
        if timeout == 0:
            raise self.fail(f"{key}.timeout_s", "must be a number above 0 (got 0)")
        return PhaseSpec(command, timeout or DEFAULT_TIMEOUT_S[key])

    def profile(self, data: Mapping[str, Any]) -> ProfileSpec | None:
        base = self.phase(data, "profile")
        if base is None:
            return None
        reference = self.number(data["profile"], "reference_time_s", 0, None, "profile.reference_time_s")
        if reference == 0:
            raise self.fail("profile.reference_time_s", "must be a number above 0 (got 0)")
        return ProfileSpec(base.command, base.timeout_s, reference)

    def completion(self, data: Mapping[str, Any], language: str, prompt: str) -> CompletionSpec | None:
        table = self.table(data, "completion")
        if table is None:
            return None
        self.unknown(table, _COMPLETION_FIELDS, "completion.")
        if "prefix" in table or language != "python":
            prefix = self.text(table, "prefix", "completion.prefix")
        else:
            prefix = prompt
        stop = table.get("stop", [])
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise self.fail("completion.stop", "must be a list of non-empty strings")
        return CompletionSpec(prefix, tuple(stop))


def _default_build(language: str, solution_file: str) -> PhaseSpec | None:
    if language != "python":
        return None
    return PhaseSpec(f"python -m py_compile {solution_file}", DEFAULT_TIMEOUT_S["build"])


# A tiny TOML writer for the shapes dump_task produces: a top-level table of strings,
# numbers and string lists, then sub-tables of the same.

_BARE_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def dumps_toml(doc: Mapping[str, Any], prefix: str = "") -> str:
    """TOML text for ``doc``; nested dicts become ``[tables]`` after the values of their parent."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in doc.items() if not isinstance(v, dict) and v is not None]
    for name, table in doc.items():
        if isinstance(table, dict):
            header = prefix + _key(name)
            lines += ["", f"[{header}]", dumps_toml(table, header + ".").rstrip("\n")]
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return key if _BARE_KEY_RE.match(key) else _basic(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, str):
        return _multiline(value) if "\n" in value else _basic(value)
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def _basic(text: str) -> str:
    """A one-line basic string: quote, backslash and control characters escaped."""
    return '"' + "".join(_escape(ch, keep="") for ch in text) + '"'


def _multiline(text: str) -> str:
    """A literal '''...''' block when the text allows one, else an escaped \"\"\" block."""
    literal_ok = "'''" not in text and not text.endswith("'") and not any(
        ch in text for ch in _CONTROL if ch not in "\n\t")
    if literal_ok:
        return "'''\n" + text + "'''"
    body = "".join(_escape(ch, keep="\n") for ch in text)
    return '"""\n' + body + '"""'


_CONTROL = frozenset(chr(c) for c in [*range(0x20), 0x7F])
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _escape(ch: str, keep: str) -> str:
    if ch in keep:
        return ch
    if ch in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[ch]
    return f"\\u{ord(ch):04x}" if ch in _CONTROL else ch
