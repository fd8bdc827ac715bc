"""Turn a model's answer into files.

Chat answers (:func:`extract_files`) carry code in fenced blocks.  The rules, in order:

1. ``<think>...</think>`` sections (reasoning models) are dropped first.
2. A block is *named* by, in this order: its info string (```` ```python title=foo.py ````,
   ```` ```cpp:src/foo.cpp ````, ```` ```python foo.py ````, ```` ```foo.py ````); a marker
   first line (``# file: foo.py``, ``// file: foo.cpp``, ``<!-- file: README.md -->``,
   which is removed); or the last non-blank line before the fence when that line is just
   a path (``**foo.py**``, ``foo.py:``, ``### src/foo.cpp``, ``File: foo.py``) or ends
   with ``:`` and holds exactly one back-quoted path ("Here is the fixed `foo.py`:").
3. Named blocks go to their names; a later block with the same name wins.
4. Unnamed blocks fill ``default_file`` unless a block already named it.  Blocks in
   shell or output languages (bash, console, text, ...) are dropped when any other
   unnamed block exists; of the rest, the longest one wins (the others are usually
   usage examples).  No concatenation: a model that wants several files names them.
5. An unclosed final fence (the model hit its token limit) still yields its code.
6. An answer without any fence becomes ``default_file`` when ``default_file`` is a
   document (``.md``, ``.rst``, ``.txt``) or the answer looks like code.

Names must be relative and stay inside the workspace; anything else raises
:class:`ExtractError`, which the loop can feed back to the model.

Base models in completion mode continue a prefix instead; see :func:`complete_from_prefix`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from kisystem.errors import KisystemError

NON_CODE_LANGS = frozenset({"bash", "sh", "shell", "console", "shell-session", "text", "txt",
                            "output", "plaintext", "log", "terminal", "zsh", "powershell", "ps"})
DOC_SUFFIXES = (".md", ".markdown", ".rst", ".txt")
_NAME_KEYS = ("title", "file", "filename", "name", "path")
_PATH_RE = re.compile(r"^(?:[\w.\-]+/)*(?:[\w.\-]*\w\.[A-Za-z][A-Za-z0-9+]*|Makefile|Dockerfile)$")
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`]*?)\s*$")
_MARKER_RE = re.compile(r"^\s*(?:#|//|/\*|<!--|--|;)\s*(?:file|filename|path)\s*:\s*(\S+?)\s*(?:\*/|-->)?\s*$",
                        re.IGNORECASE)
_THINK_RE = re.compile(r"<think>.*?</think>", re.DOTALL | re.IGNORECASE)
_CODE_LINE_RE = re.compile(r"[;{}()=\[\]]|^\s|^(?:def|class|import|from|return|#include)\b|^(?:#|//|@)")


class ExtractError(KisystemError):
    """A model answer named a file outside the workspace."""


@dataclass(frozen=True)
class Block:
    """One fenced block of an answer."""

    lang: str
    name: str | None
    code: str


def safe_relpath(name: str) -> str | None:
    """``name`` as a clean relative POSIX path, or None if it is absolute, empty or climbs out."""
    name = name.strip().replace("\\", "/")
    if not name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or "\x00" in name:
        return None
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def extract_files(answer: str, default_file: str) -> dict[str, str]:
    """Files (relative path -> content) from a chat answer; see the module docstring."""
    answer = _THINK_RE.sub("", answer)
    blocks = parse_blocks(answer)
    if not blocks:
        return {default_file: _ensure_newline(answer.strip())} if _whole_answer_is_file(answer, default_file) else {}
    files: dict[str, str] = {}
    for block in blocks:
        if block.name is not None:
            files[_checked_name(block.name)] = block.code
    unnamed = [b for b in blocks if b.name is None]
    if unnamed and default_file not in files:
        files[default_file] = _pick_unnamed(unnamed).code
    return files


def parse_blocks(answer: str) -> list[Block]:
    """Every fenced block of ``answer`` in order, with its language and name if given."""
    lines = answer.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE_RE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, info = opening.groups()
        end = _closing_index(lines, i + 1, fence)
        body = lines[i + 1:end]
        if end == len(lines) and body and set(body[-1].strip()) == {fence[0]}:
            body = body[:-1]  # a closing fence cut short by the token limit
        blocks.append(_make_block(info, body, _previous_line(lines, i)))
        i = end + 1
    return blocks


def complete_from_prefix(prefix: str, completion: str, stop: Sequence[str]) -> str:
    """The prefix plus the completion cut at the first stop sequence.

    A stop may start in the last characters of the prefix (``"\\ndef "`` where the prefix
    ends with a newline and the completion starts with ``def``) but must end inside the
    completion.  A completion that echoes the whole prefix first has the echo removed.
    """
    if prefix and completion.startswith(prefix):
        completion = completion[len(prefix):]
    text = prefix + completion
    cut = len(text)
    for s in filter(None, stop):
        at = text.find(s, max(0, len(prefix) - len(s) + 1))
        if at != -1:
            cut = min(cut, max(at, len(prefix)))
    return prefix + completion[: cut - len(prefix)].rstrip() + "\n"


def _closing_index(lines: list[str], start: int, fence: str) -> int:
    for j in range(start, len(lines)):
        stripped = lines[j].strip()
        if stripped.startswith(fence) and set(stripped) == {fence[0]}:
            return j
    return len(lines)


def _make_block(info: str, body: list[str], before: str) -> Block:
    lang, name = _parse_info(info)
    if body and (marker := _MARKER_RE.match(body[0])):
        name = name or marker.group(1)
        body = body[1:]
    return Block(lang=lang, name=name or _name_from_line(before), code=_ensure_newline("\n".join(body)))


def _parse_info(info: str) -> tuple[str, str | None]:
    """(language, file name) from a fence's info string."""
    tokens = info.split()
    if not tokens:
        return "", None
    first = tokens[0]
    if ":" in first and "=" not in first:
        lang, _, path = first.partition(":")
        return lang.lower(), path or None
    if _PATH_RE.match(first) and "." in first:
        return first.rsplit(".", 1)[-1].lower(), first
    for token in tokens[1:]:
        key, eq, value = token.partition("=")
        value = value.strip("\"'")
        if eq and key.lower() in _NAME_KEYS and value:
            return first.lower(), value
        if not eq and _PATH_RE.match(token):
            return first.lower(), token
    return first.lower(), None


def _previous_line(lines: list[str], index: int) -> str:
    for j in range(index - 1, max(-1, index - 3), -1):
        if lines[j].strip():
            return lines[j]
    return ""


def _name_from_line(line: str) -> str | None:
    """A file name announced on the line before a fence, if that is all the line says."""
    text = line.strip()
    bare = re.sub(r"^(?:#+\s*|[-*]\s+|\d+\.\s+)", "", text).strip("*_` ").rstrip(":").strip("*_` ")
    bare = re.sub(r"^(?:file(?:name)?|path)\s*:\s*", "", bare, flags=re.IGNORECASE).strip("*_` ")
    if _PATH_RE.match(bare):
        return bare
    quoted = re.findall(r"`([^`\s]+)`", text)
    if text.rstrip("*_ ").endswith(":") and len(quoted) == 1 and _PATH_RE.match(quoted[0]):
        return quoted[0]
    return None


def _checked_name(name: str) -> str:
    clean = safe_relpath(name)
    if clean is None:
        raise ExtractError(f"the answer names the file {name!r}, which is outside the workspace")
    return clean


def _pick_unnamed(blocks: list[Block]) -> Block:
    code = [b for b in blocks if b.lang not in NON_CODE_LANGS] or blocks
    return max(code, key=lambda b: len(b.code.strip()))


def _whole_answer_is_file(answer: str, default_file: str) -> bool:
    if not answer.strip():
        return False
    return default_file.lower().endswith(DOC_SUFFIXES) or looks_like_code(answer)


def looks_like_code(text: str) -> bool:
    """At least 60 % of the non-blank lines look like code rather than prose."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return False
    codeish = sum(1 for line in lines if _CODE_LINE_RE.search(line))
    return codeish / len(lines) >= 0.6


def _ensure_newline(text: str) -> str:
    return text if text.endswith("\n") or not text else text + "\n"


def whole_statements(code: str) -> str:
    """Python cut off at the token limit, trimmed to its longest prefix of whole top-level
    statements that compiles: an answer that ran out in its trailing example usage keeps
    its function.  Code that compiles, or that no trim repairs, comes back unchanged.

    ``compile`` only parses; nothing of the answer runs here.
    """
    lines = code.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line[:1].isalpha() or line[:1] in "_@"]
    for cut in [len(lines), *reversed(starts[1:])]:
        prefix = "".join(lines[:cut])
        try:
            compile(prefix, "<answer>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        return prefix
    return code
