"""Consensus: which of the ensemble's answers to give, and how sure the ensemble is of it.

Four ways, chosen by what there is to check (the first that applies):

- ``tests``: code for a task with tests.  Every candidate was judged by the loop's own
  judging (:meth:`AttemptRunner.run`, in the sandbox); the best score wins, ties go to
  the candidate more others agree with: all candidates passing every test behave alike
  on the tests, the others agree when their normalised code is equal.
- ``behaviour``: Python code without tests.  Calls are derived from the prompt's
  examples (doctest ``>>> f(1)`` lines, "f(1) -> 2" examples), every candidate answers
  them in the sandbox (the calls judge's runner), and candidates with identical answers
  form a cluster; the cluster matching most of the examples' stated results, then the
  largest, wins (the idea of CodeT and MBR-exec).
- ``ast``: Python code without usable examples: clusters of equal normalised syntax
  trees (no docstrings, no annotations, local names numbered); when no two agree, the
  medoid by token similarity.
- ``text``: the medoid by token Jaccard similarity; answers at least
  :data:`TEXT_SIMILARITY` alike to it form its cluster.

Every result reports ``confidence`` (the winning cluster's share of the answers
considered) and ``agreement`` (the share of pairs of answers that agree).  Candidate
code is never run outside the sandbox.
"""

from __future__ import annotations

import ast
import asyncio
import builtins
import json
import math
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from kisystem.ensemble.members import MemberAnswer, Settled
from kisystem.loop.extract import ExtractError, extract_files
from kisystem.loop.workspace import remove_tree
from kisystem.sandbox import Limits, SandboxLevel, run_sandboxed
from kisystem.sandbox.judge.base import write_fresh
from kisystem.sandbox.judge.calls import RUNNER_CODEC, RUNNER_SCRIPT, script
from kisystem.sandbox.judge.calls_scripts import codec

TEXT_SIMILARITY = 0.5  # token Jaccard at which two text answers count as agreeing
SOLUTION = "solution.py"
MAX_PROBE_CALLS = 16
MAX_EXAMPLE_LINE = 400  # longer lines are prose, not examples
PROBE_TIMEOUT_S = 10.0  # one candidate on every probe call
BUILTIN_NAMES = frozenset(dir(builtins))
NO_EXPECTATION = object()


class Method(StrEnum):
    TESTS = "tests"
    BEHAVIOUR = "behaviour"
    AST = "ast"
    TEXT = "text"
    NONE = "none"  # no valid answer


@dataclass(frozen=True)
class Candidate:
    """One valid answer, with its Python code ('' when it holds none) and, once judged, its result."""

    answer: MemberAnswer
    code: str = ""
    score: float | None = None
    passed: bool = False  # judged: every test passed
    attempt: Any = None  # the judged Attempt (kisystem.loop.attempt), for the loop and the record

    @property
    def model(self) -> str:
        return self.answer.member.model


@dataclass(frozen=True)
class Consensus:
    method: Method
    chosen: Candidate | None
    confidence: float  # the chosen cluster's share of the answers considered
    agreement: float  # the share of pairs of considered answers that agree (0 with fewer than two)
    clusters: tuple[int, ...] = ()  # cluster sizes, largest first
    considered: int = 0
    detail: str = ""
    agreeing: tuple[Candidate, ...] = ()  # the chosen cluster, the chosen candidate first

    @property
    def text(self) -> str:
        return self.chosen.answer.text if self.chosen else ""

    @property
    def code(self) -> str:
        return self.chosen.code if self.chosen else ""

    @property
    def cluster(self) -> int:
        """The size of the chosen answer's cluster."""
        return round(self.confidence * self.considered)

    def to_dict(self) -> dict[str, Any]:
        chosen = self.chosen
        return {"method": str(self.method), "confidence": round(self.confidence, 3),
                "agreement": round(self.agreement, 3), "clusters": list(self.clusters),
                "considered": self.considered, "detail": self.detail,
                "model": chosen.model if chosen else None, "sample": chosen.answer.member.sample if chosen else None,
                "score": chosen.score if chosen else None, "passed": chosen.passed if chosen else None}


NO_CONSENSUS = Consensus(Method.NONE, None, 0.0, 0.0, detail="no valid answer")


# -- clusters and figures -------------------------------------------------------------------


def clusters(keys: Sequence[Hashable | None]) -> list[list[int]]:
    """Indices grouped by equal key, largest group first, then by first index; a None key stands alone."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(("alone", i) if key is None else ("key", key), []).append(i)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def pairwise_share(sizes: Iterable[int], n: int) -> float:
    """The share of the n(n-1)/2 pairs that fall in one cluster; 0 with fewer than two answers."""
    pairs = n * (n - 1) / 2
    return sum(s * (s - 1) / 2 for s in sizes) / pairs if pairs else 0.0


def _result(method: Method, cands: Sequence[Candidate], groups: list[list[int]], chosen: list[int],
            detail: str = "") -> Consensus:
    n = len(cands)
    sizes = tuple(len(g) for g in groups)
    return Consensus(method, cands[chosen[0]], len(chosen) / n, pairwise_share(sizes, n), sizes, n, detail,
                     tuple(cands[i] for i in chosen))


# -- text --------------------------------------------------------------------------------------


def tokens(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"\w+", text.lower()))


def similarity(a: str, b: str) -> float:
    """Token Jaccard similarity: 1 for the same words, 0 for none in common."""
    ta, tb = tokens(a), tokens(b)
    return len(ta & tb) / len(ta | tb) if ta | tb else 1.0


def by_text(cands: Sequence[Candidate], texts: Sequence[str] | None = None, method: Method = Method.TEXT,
            detail: str = "") -> Consensus:
    """The medoid (the answer most similar to all others); its cluster: the answers at least
    TEXT_SIMILARITY alike to it.  Further clusters are formed the same way from the rest."""
    if not cands:
        return NO_CONSENSUS
    texts = list(texts) if texts is not None else [c.answer.text for c in cands]
    sims = [[similarity(a, b) if i != j else 1.0 for j, b in enumerate(texts)] for i, a in enumerate(texts)]
    groups, rest = [], list(range(len(texts)))
    while rest:
        medoid = max(rest, key=lambda i: (sum(sims[i][j] for j in rest), -i))
        group = [medoid, *(j for j in rest if j != medoid and sims[medoid][j] >= TEXT_SIMILARITY)]
        groups.append(group)
        rest = [j for j in rest if j not in group]
    close = sum(sims[i][j] >= TEXT_SIMILARITY for i in range(len(texts)) for j in range(i + 1, len(texts)))
    n, sizes = len(texts), tuple(len(g) for g in groups)
    pairs = n * (n - 1) / 2
    return Consensus(method, cands[groups[0][0]], len(groups[0]) / n, close / pairs if pairs else 0.0,
                     tuple(sorted(sizes, reverse=True)), n, detail, tuple(cands[i] for i in groups[0]))


def normalised_text(text: str) -> str:
    """An answer as the quorum compares it: lower case, whitespace collapsed, no end punctuation."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(" .!")


# -- code --------------------------------------------------------------------------------------


def python_code(text: str) -> str:
    """The Python code of an answer: its file as the loop extracts it, if that parses and defines a
    function or class ('' otherwise: a bare expression like ``42`` is an answer, not code)."""
    try:
        code = extract_files(text, SOLUTION).get(SOLUTION, "")
    except ExtractError:
        return ""
    tree = _parsed(code)
    defines = tree is not None and any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                                       for n in ast.walk(tree))
    return code if defines else ""


def _parsed(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def defined_functions(code: str) -> list[str]:
    tree = _parsed(code)
    return [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))] if tree else []


class _Normaliser(ast.NodeTransformer):
    """Docstrings and annotations dropped; every name but builtins and ``keep`` numbered in order of
    first appearance, so that two answers differing only in naming compare equal."""

    def __init__(self, keep: frozenset[str]) -> None:
        self.keep = keep | BUILTIN_NAMES
        self.names: dict[str, str] = {}

    def _name(self, name: str) -> str:
        return name if name in self.keep else self.names.setdefault(name, f"v{len(self.names)}")

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._name(node.id)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        node.arg, node.annotation = self._name(node.arg), None
        return node

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        assign = ast.Assign(targets=[node.target], value=node.value) if node.value else ast.Expr(node.target)
        return self.visit(assign)

    def _defined(self, node: Any) -> Any:
        node.name = self._name(node.name)
        if hasattr(node, "returns"):
            node.returns = None
        node.body = _without_docstring(node.body)
        self.generic_visit(node)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _defined


def _without_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        body = body[1:]
    return body or [ast.Pass()]


def ast_key(code: str, keep: Iterable[str] = ()) -> str | None:
    """The normalised syntax tree of ``code`` as a string (None when it does not parse)."""
    tree = _parsed(code)
    if tree is None:
        return None
    tree.body = _without_docstring(tree.body)
    try:
        return ast.dump(_Normaliser(frozenset(keep)).visit(tree), annotate_fields=False)
    except RecursionError:
        return None


def code_key(code: str, language: str = "python", keep: Iterable[str] = ()) -> str | None:
    """What makes two answers' code "the same": the normalised tree for Python, else the code with
    its whitespace collapsed; None for no code."""
    if not code.strip():
        return None
    return ast_key(code, keep) if language == "python" else re.sub(r"\s+", " ", code).strip()


def by_ast(cands: Sequence[Candidate], keep: Iterable[str] = (), detail: str = "") -> Consensus:
    """Clusters of equal normalised trees; when no two agree, the medoid by similarity of the code."""
    if not cands:
        return NO_CONSENSUS
    keep = tuple(keep)
    groups = clusters([ast_key(c.code, keep) for c in cands])
    if len(groups[0]) == 1 and len(cands) > 2:
        medoid = by_text(cands, [c.code for c in cands], Method.AST, "no two alike: the medoid by similarity")
        return replace(medoid, agreement=0.0, clusters=tuple(len(g) for g in groups), confidence=1 / len(cands),
                       agreeing=medoid.agreeing[:1])
    return _result(Method.AST, cands, groups, groups[0], detail)


# -- tests -------------------------------------------------------------------------------------


def by_tests(cands: Sequence[Candidate], language: str = "python") -> Consensus:
    """The best judged score; ties go to the larger cluster (all passing candidates are one
    cluster, the others agree by equal normalised code), then to the earlier answer."""
    if not cands:
        return NO_CONSENSUS
    keys = [("passed",) if c.passed else ("code", c.score, code_key(c.code, language)) for c in cands]
    keys = [None if k[0] == "code" and k[2] is None else k for k in keys]
    groups = clusters(keys)
    size = {i: len(g) for g in groups for i in g}
    best = max(range(len(cands)), key=lambda i: (cands[i].score or 0.0, size[i], -i))
    group = next(g for g in groups if best in g)
    chosen = [best, *(i for i in group if i != best)]
    detail = f"score {cands[best].score or 0:.0f}" + (", passes every test" if cands[best].passed else "")
    return _result(Method.TESTS, cands, groups, chosen, detail)


# -- behaviour ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """Calls of ``entry`` derived from a prompt, with the results the prompt states (or NO_EXPECTATION)."""

    entry: str
    calls: tuple[tuple[tuple, dict], ...]
    expected: tuple[object, ...]

    def stdin(self) -> bytes:
        """The calls in the calls judge's format: one [group, args, kwargs] line each."""
        lines = (codec.dumps([i, list(args), kwargs]) for i, (args, kwargs) in enumerate(self.calls))
        return ("\n".join(lines) + "\n").encode()


_CALL_START = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\(")
_ARROW = re.compile(r"^\s*(?:->|=>|==>|==|➞|→|=|:|returns?|should\s+return|gives|is)\s+"
                    r"|^\s*(?:->|=>|==>|==|➞|→)")
_PAIRS = {"(": ")", "[": "]", "{": "}"}


def derive_probe(prompt: str, names: Iterable[str] = ()) -> Probe | None:
    """Calls from the prompt's examples: doctest lines (``>>> f(1)`` and the result on the next line)
    and "f(1) -> 2" style examples, with literal arguments only.  The function called most often
    (among ``names`` when given) is the entry.  None when there is no such call."""
    allowed = set(names)
    found = [(name, args, kwargs, expected) for name, args, kwargs, expected in _examples(prompt)
             if name not in BUILTIN_NAMES and (not allowed or name in allowed)]
    if not found:
        return None
    entry = Counter(name for name, *_ in found).most_common(1)[0][0]
    calls, expected, seen = [], [], set()
    for name, args, kwargs, value in found:
        mark = repr((args, sorted(kwargs.items())))
        if name == entry and mark not in seen and len(calls) < MAX_PROBE_CALLS:
            seen.add(mark)
            calls.append((args, kwargs))
            expected.append(value)
    return Probe(entry, tuple(calls), tuple(expected))


def _examples(prompt: str) -> Iterator[tuple[str, tuple, dict, object]]:
    lines = prompt.splitlines()
    entry = _entry_of(prompt)
    for i, line in enumerate(lines):
        if len(line) > MAX_EXAMPLE_LINE:
            continue
        doctest = re.match(r"^\s*>>>\s*(.*)$", line)
        parsed = _call(doctest.group(1).strip()) if doctest else None
        if parsed and parsed[0] not in BUILTIN_NAMES:
            yield *parsed, _doctest_result(lines, i + 1)
            continue
        for source, rest in _calls_in(doctest.group(1) if doctest else line):  # f(1) -> 2; round(f(x), 2)
            parsed = _call(source)
            if parsed:
                yield *parsed, _stated_result(rest)
        if entry:
            yield from _described(entry, line, lines[i + 1:i + 3])


def _entry_of(prompt: str) -> tuple[str, list[str]] | None:
    """The function a prompt defines last (HumanEval puts helpers first) and its parameters, for
    Input/Output examples."""
    defs = re.findall(r"^\s*def\s+([A-Za-z_]\w*)\s*\(([^)]*)\)", prompt, re.MULTILINE)
    if not defs:
        return None
    name, params = defs[-1]
    try:
        args = ast.parse(f"def f({params}): pass").body[0].args  # type: ignore[attr-defined]
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return name, []
    return name, [a.arg for a in (*args.posonlyargs, *args.args)]


def _positional(parsed: tuple[str, tuple, dict], params: list[str]) -> tuple[str, tuple, dict]:
    """Keyword arguments as positional ones in the prompt's order, so that a candidate that renames a
    parameter still answers."""
    name, args, kwargs = parsed
    if args or not kwargs or list(kwargs) != params[:len(kwargs)]:
        return parsed
    return name, tuple(kwargs.values()), {}


def _described(entry: tuple[str, list[str]], line: str, after: list[str]) -> Iterator[tuple[str, tuple, dict, object]]:
    """"Input: x = [1, 2], k = 3" with "Output: 5" on a following line, and "For x = [1, 2] the
    output should be 5": the arguments are spliced into a call of the prompt's function."""
    name, params = entry
    given = re.match(r"^\s*Input\s*:\s*(.+)$", line)
    told = re.match(r"^\s*For\s+(.+?)\s*,?\s+the\s+(?:output|result)\s+should\s+be\s+(.+)$", line, re.IGNORECASE)
    parsed = _call(f"{name}({(given or told).group(1).strip()})") if given or told else None
    if parsed is None:
        return
    if given:
        output = next((m for m in (re.match(r"^\s*Output\s*:\s*(.+)$", a) for a in after) if m), None)
        result = _literal(output.group(1).strip().rstrip(".")) if output else NO_EXPECTATION
    else:
        result = _literal(told.group(2).strip().rstrip("."))
    yield *_positional(parsed, params), result


def _doctest_result(lines: list[str], i: int) -> object:
    if i >= len(lines) or not lines[i].strip() or lines[i].lstrip().startswith((">>>", "...")):
        return NO_EXPECTATION
    return _literal(lines[i].strip())


def _stated_result(rest: str) -> object:
    arrow = _ARROW.match(rest)
    if not arrow:
        return NO_EXPECTATION
    value = re.sub(r"\s+#.*$", "", rest[arrow.end():]).strip()
    # The whole rest, else the longest piece before a sentence break ("[7].  Then ...", "3; or ...").
    cuts = [value, *(value[:m.start()] for m in reversed(list(re.finditer(r"[.;,](?=\s)", value))))]
    return next((v for v in map(_literal, (c.strip().rstrip(".,;").strip() for c in cuts)) if v is not NO_EXPECTATION),
                NO_EXPECTATION)


def _literal(text: str) -> object:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return NO_EXPECTATION


def _calls_in(line: str) -> Iterator[tuple[str, str]]:
    """(call source, the rest of the line) for every balanced ``name(...)`` in the line."""
    for match in _CALL_START.finditer(line):
        end = _closing(line, match.end() - 1)
        if end is not None:
            yield line[match.start():end + 1], line[end + 1:]


def _closing(text: str, start: int) -> int | None:
    """The index of the bracket closing the one at ``start`` (strings skipped), or None."""
    stack, quote, i = [], "", start
    while i < len(text):
        ch = text[i]
        if quote:
            i += 2 if ch == "\\" else 1
            quote = "" if ch == quote else quote
            continue
        if ch in "'\"":
            quote = ch
        elif ch in _PAIRS:
            stack.append(_PAIRS[ch])
        elif ch in ")]}":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return i
        i += 1
    return None


def _call(source: str) -> tuple[str, tuple, dict] | None:
    """(name, args, kwargs) of a call of a plain name with literal arguments only, else None."""
    try:
        node = ast.parse(source, mode="eval").body
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        return None
    try:
        args = tuple(ast.literal_eval(a) for a in node.args if not isinstance(a, ast.Starred))
        kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg}
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if len(args) != len(node.args) or len(kwargs) != len(node.keywords):
        return None
    return node.func.id, args, kwargs


def canonical(value: object) -> Hashable:
    """A hashable stand-in for a decoded answer: equal answers, equal keys; a list is no tuple,
    True is no 1, floats agree to 10 significant digits."""
    kind = type(value)
    if kind is float:
        return ("f", float(f"{value:.10g}")) if math.isfinite(value) else ("f", repr(value))
    if kind in (list, tuple):
        return (kind.__name__, tuple(canonical(v) for v in value))
    if kind in (set, frozenset):
        return ("set", tuple(sorted(repr(canonical(v)) for v in value)))
    if kind is dict:
        return ("dict", tuple(sorted((repr(canonical(k)), repr(canonical(v))) for k, v in value.items())))
    if isinstance(value, codec.Unencodable):
        return ("x", id(value))  # equals nothing
    return (kind.__name__, value) if isinstance(value, Hashable) else ("?", repr(value))


def answer_key(line: str) -> Hashable:
    """One line of the runner's answers as a key: the value, or how the call failed."""
    try:
        data = json.loads(line)
    except ValueError:
        return ("garbled",)
    if not isinstance(data, dict):
        return ("garbled",)
    if "v" in data:
        try:
            return ("v", canonical(codec.from_tree(data["v"])))
        except codec.DecodeError:
            return ("garbled",)
    if "e" in data:
        return ("raised", str(data["e"][0]) if isinstance(data["e"], list) and data["e"] else "?")
    return ("timeout",) if "t" in data else ("load",)


class BehaviourRunner:
    """Runs candidate code on a probe's calls in the sandbox, with the calls judge's runner, each
    candidate in a fresh directory of its own under ``root``."""

    def __init__(self, root: Path, level: SandboxLevel | None = None, timeout_s: float = PROBE_TIMEOUT_S,
                 concurrency: int = 2) -> None:
        self.root = root
        self.level = level
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(concurrency)

    async def answers(self, code: str, probe: Probe) -> tuple[Hashable, ...]:
        """One key per probe call (see :func:`answer_key`); ("none",) for calls it never answered."""
        self.root.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix="probe-", dir=self.root))
        try:
            write_fresh(workdir / SOLUTION, code)
            write_fresh(workdir / RUNNER_SCRIPT, script("runner.py"))
            write_fresh(workdir / RUNNER_CODEC, script("codec.py"))
            async with self._slots:
                result = await run_sandboxed(["python", "-I", "-B", RUNNER_SCRIPT, SOLUTION, probe.entry], workdir,
                                             self.timeout_s, Limits(cpu_s=int(self.timeout_s) + 1), level=self.level,
                                             stdin_data=probe.stdin(), split_stdout=True)
        finally:
            remove_tree(workdir)
        keys = [answer_key(line) for line in result.stdout.splitlines()[:len(probe.calls)]]
        return tuple(keys + [("none",)] * (len(probe.calls) - len(keys)))


def matched(answers: Sequence[Hashable], probe: Probe) -> int:
    """How many of the probe's stated results the answers match."""
    return sum(e is not NO_EXPECTATION and a == ("v", canonical(e)) for a, e in zip(answers, probe.expected))


async def by_behaviour(cands: Sequence[Candidate], probe: Probe, runner: BehaviourRunner) -> Consensus | None:
    """Clusters of identical answers to the probe's calls; the cluster matching most stated results,
    then the largest, wins.  None when no candidate even loads (the caller falls back to the AST)."""
    if not cands:
        return None
    unique: dict[Hashable, str] = {}
    shapes = [ast_key(c.code, [probe.entry]) or c.code for c in cands]
    for shape, c in zip(shapes, cands):
        unique.setdefault(shape, c.code)
    ran = dict(zip(unique, await asyncio.gather(*(runner.answers(code, probe) for code in unique.values()))))
    keys = [ran[s] for s in shapes]
    loaded = [not all(k in (("load",), ("none",)) for k in key) for key in keys]
    if not any(loaded):
        return None
    groups = clusters(keys)
    best = max(groups, key=lambda g: (loaded[g[0]], matched(keys[g[0]], probe), len(g), -g[0]))
    stated = sum(e is not NO_EXPECTATION for e in probe.expected)
    detail = f"{len(probe.calls)} calls of {probe.entry}() from the prompt" + (
        f", {matched(keys[best[0]], probe)} of {stated} stated results matched" if stated else "")
    return _result(Method.BEHAVIOUR, cands, groups, best, detail)


# -- choosing a method, and the quorum ---------------------------------------------------------


def candidates_of(answers: Iterable[MemberAnswer]) -> list[Candidate]:
    """The valid answers as candidates, with their Python code."""
    return [Candidate(a, python_code(a.text)) for a in answers if a.ok]


async def agree(prompt: str, answers: Iterable[MemberAnswer], runner: BehaviourRunner | None = None) -> Consensus:
    """The consensus of a question's answers: by code when most valid answers hold Python code
    (behaviour where the prompt has examples and a runner is given, else the AST), else by text."""
    cands = candidates_of(answers)
    if not cands:
        return NO_CONSENSUS
    coded = [c for c in cands if c.code]
    if len(coded) * 2 <= len(cands):
        return by_text(cands)
    names = {n for c in coded for n in defined_functions(c.code)}
    probe = derive_probe(prompt, names)
    if probe is not None and runner is not None:
        found = await by_behaviour(coded, probe, runner)
        if found is not None:
            return found
    return by_ast(coded, [probe.entry] if probe else (), "no examples in the prompt to run" if probe is None else
                  "no candidate loads")


def quorum_key(answer: MemberAnswer) -> Hashable | None:
    """What the quorum compares: the normalised tree of an answer's code, else its normalised text."""
    if not answer.ok:
        return None
    code = python_code(answer.text)
    return ("code", ast_key(code)) if code else ("text", normalised_text(answer.text))


def quorum(share: float, planned: int, key: Callable[[MemberAnswer], Hashable | None] = quorum_key) -> Settled:
    """A fan-out's ``settled`` callback: True once ``share`` of the ``planned`` members (at least two)
    gave the same answer by ``key``.  For tested code agreement is only known after judging: there
    the ensemble stops once one candidate passes every test instead."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"quorum share {share} is outside (0, 1]")
    need = max(2, math.ceil(share * planned - 1e-9))

    def settled(answers: Sequence[MemberAnswer]) -> bool:
        counts = Counter(k for k in map(key, answers) if k is not None)
        return bool(counts) and max(counts.values()) >= need

    return settled
