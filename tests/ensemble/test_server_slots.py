"""The embedded llama.cpp servers get parallel slots for the ensemble's concurrent members, each slot
with the model's whole context.  No model starts: the params are checked on a stand-in."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from kisystem.config import EnsembleSettings, OptimizationConfig
from kisystem.errors import UsageError
from kisystem.models.inventory import load_inventory
from kisystem.models.server import server_params

QWEN = "qwen2.5-coder-0.5b"


def fake_params() -> SimpleNamespace:
    """What server_params sets of xllamacpp's CommonParams, without loading llama.cpp."""
    return SimpleNamespace(model=SimpleNamespace(), cpuparams=SimpleNamespace())


def test_each_slot_gets_the_models_whole_context() -> None:
    spec = load_inventory("embedded").model(QWEN)
    one = server_params(fake_params(), spec, Path("/m/q.gguf"), 18599)
    assert (one.n_parallel, one.n_ctx) == (1, 4096)
    three = server_params(fake_params(), spec, Path("/m/q.gguf"), 18599, slots=3)
    assert (three.n_parallel, three.n_ctx) == (3, 3 * 4096)  # llama.cpp splits n_ctx over the slots
    with pytest.raises(UsageError, match="at least one slot, not 0"):
        server_params(fake_params(), spec, Path("/m/q.gguf"), 18599, slots=0)


def test_xllamacpp_has_the_parallel_slots_parameter() -> None:
    xllamacpp = pytest.importorskip("xllamacpp")
    params = xllamacpp.CommonParams()  # no model is loaded
    spec = load_inventory("embedded").model(QWEN)
    server_params(params, spec, Path("/m/q.gguf"), 18599, slots=2)
    assert (params.n_parallel, params.n_ctx, params.kv_unified) == (2, 8192, False)


def test_the_slots_follow_the_semaphore_unless_set() -> None:
    assert EnsembleSettings().llama_slots == 2 == EnsembleSettings().max_concurrent_per_endpoint
    assert EnsembleSettings(max_concurrent_per_endpoint=4).llama_slots == 4
    assert EnsembleSettings(max_concurrent_per_endpoint=4, server_slots=1).llama_slots == 1
    assert OptimizationConfig.from_dict({"ensemble": {"server_slots": 6}}).ensemble.llama_slots == 6


def test_models_serve_starts_the_servers_with_the_configured_slots(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from kisystem.cli import main as cli_main
    from kisystem.cli import models_cmd

    for name in [n for n in os.environ if n.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KISYSTEM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KISYSTEM_ENSEMBLE__SERVER_SLOTS", "3")
    served: list[int] = []
    monkeypatch.setattr(models_cmd, "serve", lambda *args, slots, **kw: served.append(slots))
    cli_main._register_commands()
    done = CliRunner().invoke(cli_main.cli, ["models", "serve", "--model", QWEN])
    assert done.exit_code == 0, (done.output, done.exception)
    assert served == [3]
