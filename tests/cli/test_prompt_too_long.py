"""A prompt far over every model's context: refused unsent, with the sizes named, in seconds."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.cli.support import kisystem, local_home

ADD = Path(__file__).parents[2] / "examples" / "judged" / "add.toml"


def test_a_5_mib_prompt_ends_with_one_line_naming_the_sizes(tmp_path, httpserver):
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": "tiny"}]})
    home = local_home(tmp_path / "home", httpserver.url_for(""), {"tiny": "context_tokens = 4096"})
    task = tmp_path / "huge.toml"
    task.write_text(ADD.read_text().replace('prompt = "Write add(a, b) returning the sum of a and b."',
                                            f'prompt = "{"Add two numbers. " * (5 * 2**20 // 17)}"'))
    started = time.monotonic()
    proc = kisystem(home, "run", str(task))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    ending = " ".join(proc.stderr.split()).split("example.add: exhausted")[1]  # piped lines wrap at 120
    assert re.search(r"the prompt of \d{7} tokens \(estimated\) does not fit tiny's context of 4096 tokens", ending)
    assert time.monotonic() - started < 30
    assert not [entry for entry, _ in httpserver.log if entry.path == "/v1/chat/completions"]  # never sent
