"""A fresh directory per attempt, holding the model's files and the fixed files.

Model answers are untrusted: their paths must stay inside the workspace, and they must
not be able to change the fixed files (tests, reference code).  :meth:`restore_fixed`
puts those back byte-exactly before every build and test, whatever was done to them;
the sandbox then binds them read-only (see :func:`kisystem.sandbox.run_sandboxed`).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from kisystem.errors import KisystemError, UsageError

READ_ONLY = 0o444


class UnsafePathError(UsageError):
    """A file path would leave the workspace (absolute, '..', through a symlink)."""


class WorkspaceError(KisystemError):
    """The workspace could not be created or written."""


class Workspace:
    """One attempt's working directory: ``root/run_id/attempt-N``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fixed: dict[str, Path] = {}

    @classmethod
    def create(cls, root: Path, run_id: str, attempt: int) -> Workspace:
        """Make a new, empty workspace; an existing one is never reused."""
        if run_id in ("", ".", "..") or "/" in run_id or "\0" in run_id:
            raise UsageError(f"invalid run id {run_id!r}")
        if attempt < 0:
            raise UsageError(f"invalid attempt number {attempt}")
        path = root.resolve() / run_id / f"attempt-{attempt}"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
        except FileExistsError:
            raise WorkspaceError(f"workspace {path} already exists; attempts are never reused") from None
        except OSError as exc:
            raise WorkspaceError(f"cannot create workspace {path}: {exc}") from exc
        return cls(path)

    def write_files(self, files: Mapping[str, str]) -> list[Path]:
        """Write the model's files (relative paths), creating parent directories."""
        written = []
        for rel, content in files.items():
            target = self._checked(rel)
            try:
                self._make_parents(target, repair=False)
                replace_file(target, content.encode(), mode=0o644, repair=False)
            except OSError as exc:
                raise WorkspaceError(f"cannot write {rel!r}: {exc}") from exc
            written.append(target)
        return written

    def restore_fixed(self, fixed: Mapping[str, str | bytes]) -> None:
        """(Re)write the fixed files byte-exactly and read-only, replacing whatever is
        there: a file the model wrote, a symlink, a directory."""
        for rel, content in fixed.items():
            target = self._inside(rel)
            data = content.encode() if isinstance(content, str) else content
            try:
                self._make_parents(target, repair=True)
                replace_file(target, data, mode=READ_ONLY, repair=True)
            except OSError as exc:
                raise WorkspaceError(f"cannot restore fixed file {rel!r}: {exc}") from exc
            self._fixed[rel] = target

    def fixed_paths(self) -> list[Path]:
        """Absolute paths of every fixed file restored so far."""
        return sorted(self._fixed.values())

    # --- paths ------------------------------------------------------------------

    def _inside(self, rel: str) -> Path:
        """The absolute path for ``rel``, refused if it is absolute or climbs out."""
        pure = PurePosixPath(rel)
        if not rel or "\0" in rel or pure.is_absolute() or ".." in pure.parts:
            raise UnsafePathError(f"unsafe file path {rel!r}: must be relative, without '..'")
        if not pure.parts or pure.parts == (".",):
            raise UnsafePathError(f"unsafe file path {rel!r}: names no file")
        return self.path.joinpath(*pure.parts)

    def _checked(self, rel: str) -> Path:
        """Like :meth:`_inside`, and no existing part of the path may be a symlink."""
        target = self._inside(rel)
        current = self.path
        for part in target.relative_to(self.path).parts:
            current = current / part
            if current.is_symlink():
                raise UnsafePathError(f"unsafe file path {rel!r}: {current} is a symlink")
        return target

    def _make_parents(self, target: Path, *, repair: bool) -> None:
        # Created one level at a time with lstat checks, so a symlinked or non-directory
        # parent is replaced (repair) or refused, never followed.
        current = self.path
        for part in target.relative_to(self.path).parts[:-1]:
            current = current / part
            try:
                mode = current.lstat().st_mode
            except FileNotFoundError:
                current.mkdir()
                continue
            if stat.S_ISDIR(mode):
                continue
            if not repair:
                raise UnsafePathError(f"{current} exists and is not a directory")
            current.unlink()
            current.mkdir()


def replace_file(target: Path, data: bytes, *, mode: int, repair: bool) -> None:
    """Write a new file at ``target``, never writing through what was there (with
    ``repair``, a directory in the way is removed too)."""
    _remove(target, repair=repair)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(target, flags, mode)
    try:
        with os.fdopen(fd, "wb", closefd=False) as fh:
            fh.write(data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _remove(target: Path, *, repair: bool) -> None:
    # Unlinking first (rather than truncating) means a hard link the program made to
    # some other file is never written through.
    try:
        mode = target.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        if not repair:
            raise UnsafePathError(f"{target} is a directory")
        shutil.rmtree(target, onerror=_force_remove)
    else:
        target.unlink()


def _force_remove(func: object, path: str, _exc: object) -> None:
    """rmtree helper: a read-only directory inside gets write permission, then retry."""
    os.chmod(os.path.dirname(path), 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
        shutil.rmtree(path, onerror=_force_remove)
    else:
        os.unlink(path)


FAILED_MARK = ".failed"  # marks a kept workspace of a failed run, for pruning


@dataclass(frozen=True)
class WorkspaceKeeping:
    """Which run directories outlive their run: all (``keep_all``), else those of the
    ``keep_failed`` most recent failed runs; a solved run's are removed at once."""

    keep_all: bool = False
    keep_failed: int = 5

    def retire(self, root: Path, run_id: str, *, solved: bool) -> None:
        run_dir = root / run_id
        if self.keep_all or not run_dir.is_dir():
            return
        if solved or self.keep_failed == 0:
            remove_tree(run_dir)
            return
        (run_dir / FAILED_MARK).touch()
        kept = sorted((d for d in root.iterdir() if (d / FAILED_MARK).is_file()),
                      key=lambda d: (d / FAILED_MARK).stat().st_mtime, reverse=True)
        for old in kept[self.keep_failed:]:
            remove_tree(old)


def remove_tree(path: Path) -> None:
    """Remove ``path`` and everything in it, whatever modes the program left inside."""
    shutil.rmtree(path, onerror=_force_remove)
