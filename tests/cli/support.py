"""Running the real CLI in a subprocess, and what its error output must look like."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def kisystem(home: Path, *args: str, env: dict[str, str] | None = None, prefix: list[str] | None = None,
             timeout: float = 60) -> subprocess.CompletedProcess:
    """``python -m kisystem ARGS`` with HOME as its home and no other KISYSTEM_* setting but ``env``.

    ``prefix`` runs it through another command first (e.g. one that mounts a folder read-only)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KISYSTEM_")}
    clean.update({"KISYSTEM_HOME": str(home), **(env or {})})
    return subprocess.run([*(prefix or []), sys.executable, "-m", "kisystem", *args], capture_output=True,
                          text=True, env=clean, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess, *, warnings_allowed: bool = False) -> str:
    """The one ``error: ...`` line of a failed command: the last line of stderr, and no traceback.

    With ``warnings_allowed`` (``run`` warns about its sandbox level first) other lines may come
    before it; otherwise stderr is that line alone."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    assert errors[0].startswith("error: ")
    if not warnings_allowed:
        assert len(lines) == 1, proc.stderr
    return errors[0]


def sse_answer(text: str) -> str:
    """One streamed OpenAI-compatible chat answer carrying ``text``."""
    chunk = {"choices": [{"delta": {"content": text}, "finish_reason": "stop"}]}
    return f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"


def local_home(home: Path, base_url: str, models: dict[str, str] | None = None, start: str = "tiny",
               escalation: tuple[str, ...] = ()) -> Path:
    """A home whose config selects an inventory of ``models`` (name -> extra TOML lines) at ``base_url``,
    routing Python/General from ``start`` through ``escalation``."""
    home.mkdir(parents=True, exist_ok=True)
    entries = "".join(f'''
[[models]]
name = "{name}"
rank = {rank}
timeout_s = 30
endpoint = "local"
{extra}''' for rank, (name, extra) in enumerate((models or {"tiny": ""}).items(), 1))
    (home / "inventory.toml").write_text(f'''
[endpoints.local]
backend = "openai"
base_url = "{base_url.rstrip("/")}"
{entries}
[routes."Python/General"]
start = "{start}"
escalation = {json.dumps(list(escalation))}
''')
    (home / "optimization_config.json").write_text(json.dumps({"inventory_file": str(home / "inventory.toml")}))
    return home
