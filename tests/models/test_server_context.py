"""The context an embedded model is served with: the inventory's (or the active version's), passed to the
server child on its command line, and a reused server with another context warned about.  No model starts."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from kisystem.config import OptimizationConfig
from kisystem.errors import UsageError
from kisystem.improve.overlay import ModelTuning, Overlay
from kisystem.models.catalog import embedded_model
from kisystem.models.inventory import load_inventory, parse_inventory
from kisystem.models.server import EmbeddedFleet, parse_n_ctx, served_n_ctx, server_params, with_contexts

QWEN = "qwen2.5-coder-0.5b"
SMOL = "smollm2-135m"


def fake_params() -> SimpleNamespace:
    """What server_params sets of xllamacpp's CommonParams, without loading llama.cpp."""
    return SimpleNamespace(model=SimpleNamespace(), cpuparams=SimpleNamespace())


def test_the_server_is_started_with_the_models_context_else_the_catalogs() -> None:
    spec = load_inventory("embedded").model(QWEN)
    assert spec.context_tokens == embedded_model(QWEN).n_ctx == 4096  # the inventory defaults to the catalog's
    params = server_params(fake_params(), spec, Path("/m/q.gguf"), 18599, n_threads=2)
    assert (params.n_ctx, params.port, params.model.path, params.model_alias) == (4096, 18599, "/m/q.gguf", {QWEN})
    assert params.cpuparams.n_threads == 2
    tuned = Overlay(models={QWEN: ModelTuning(context_tokens=8192)}).apply(OptimizationConfig(),
                                                                          load_inventory("embedded"))[1]
    assert server_params(fake_params(), tuned.model(QWEN), Path("/m/q.gguf"), 18599).n_ctx == 8192


def test_the_fleet_names_each_context_on_the_childs_command_line(tmp_path: Path) -> None:
    """The child reads the config file's inventory, not the active version: the command line carries it."""
    active = Overlay(models={QWEN: ModelTuning(context_tokens=8192)}).apply(OptimizationConfig(),
                                                                           load_inventory("embedded"))[1]
    fleet = EmbeddedFleet(active, tmp_path / "home", config_file=tmp_path / "config.json")
    cmd = fleet.serve_command([QWEN, SMOL])
    assert cmd[:3] == [sys.executable, "-m", "kisystem"] and cmd[cmd.index("--config") + 1].endswith("config.json")
    serve = cmd[cmd.index("serve"):]
    assert serve == ["serve", "--quiet", "--model", SMOL, "--n-ctx", f"{SMOL}=4096",
                     "--model", QWEN, "--n-ctx", f"{QWEN}=8192"]
    assert "--n-ctx" not in fleet.serve_command([])


def test_n_ctx_arguments_are_parsed_and_bad_ones_are_one_line_errors() -> None:
    assert parse_n_ctx([f"{QWEN}=8192", "m=256"]) == {QWEN: 8192, "m": 256}
    for bad, problem in (("8192", "expected MODEL=TOKENS"), ("m=lots", "n_ctx 'lots' is not an integer"),
                         ("m=100", "n_ctx 100 is not an integer 256..16777216"), ("m=-5", "n_ctx '-5'")):
        with pytest.raises(UsageError, match=problem) as caught:
            parse_n_ctx([bad])
        assert str(caught.value).startswith(f"--n-ctx {bad!r}: ") and "\n" not in str(caught.value)


def test_contexts_replace_only_the_named_embedded_models() -> None:
    inventory = load_inventory("embedded")
    served = with_contexts(inventory, {QWEN: 2048})
    assert served.model(QWEN).context_tokens == 2048 and served.model(SMOL) == inventory.model(SMOL)
    assert with_contexts(inventory, {}) == inventory
    with pytest.raises(UsageError, match="not embedded models: ghost"):
        with_contexts(inventory, {"ghost": 2048})


def test_models_serve_applies_its_n_ctx_before_serving(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kisystem.cli import main as cli_main
    from kisystem.cli import models_cmd

    for name in [n for n in os.environ if n.startswith("KISYSTEM_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KISYSTEM_HOME", str(tmp_path / "home"))
    served: list = []
    monkeypatch.setattr(models_cmd, "serve", lambda inventory, models_dir, names, **kw: served.append((inventory,
                                                                                                       names)))
    cli_main._register_commands()
    done = CliRunner().invoke(cli_main.cli, ["models", "serve", "--model", QWEN, "--n-ctx", f"{QWEN}=8192"])
    assert done.exit_code == 0, (done.output, done.exception)
    [(inventory, names)] = served
    assert names == [QWEN] and inventory.model(QWEN).context_tokens == 8192
    bad = CliRunner().invoke(cli_main.cli, ["models", "serve", "--n-ctx", f"{QWEN}=12"])
    assert bad.exit_code != 0 and len(served) == 1


# -- a reused server ----------------------------------------------------------------------------------


def fleet_on(url: str, home: Path, **model) -> EmbeddedFleet:
    inventory = parse_inventory({
        "endpoints": {"e": {"backend": "openai", "base_url": url.rstrip("/")}},
        "models": [{"name": QWEN, "rank": 1, "timeout_s": 5, "endpoint": "e", "embedded": QWEN, **model}],
        "routes": {"Python/General": {"start": QWEN}},
    }, "fleet test")
    return EmbeddedFleet(inventory, home)


def serving(httpserver, n_ctx: int) -> None:
    httpserver.expect_request("/health").respond_with_json({"status": "ok"})
    httpserver.expect_request("/v1/models").respond_with_json({"data": [{"id": QWEN}]})
    httpserver.expect_request("/props").respond_with_json({"default_generation_settings": {"n_ctx": n_ctx}})


def test_a_reused_server_with_another_context_is_warned_about_in_one_line(httpserver, tmp_path, caplog) -> None:
    serving(httpserver, 4096)
    with caplog.at_level(logging.WARNING, "kisystem.models.server"):
        with fleet_on(httpserver.url_for("/"), tmp_path / "home", context_tokens=8192) as fleet:
            assert fleet._proc is None  # reused, nothing started
    [warning] = [r.getMessage() for r in caplog.records if "context" in r.getMessage()]
    assert f"reusing the server of {QWEN}" in warning and "serves a 4096-token context, not this configuration's 8192"\
        in warning and "\n" not in warning


def test_a_reused_server_with_the_same_context_is_not_warned_about(httpserver, tmp_path, caplog) -> None:
    serving(httpserver, 4096)
    with caplog.at_level(logging.WARNING, "kisystem.models.server"):
        with fleet_on(httpserver.url_for("/"), tmp_path / "home"):
            pass
    assert served_n_ctx(load_inventory("embedded").model(QWEN)) == 4096
    assert not [r for r in caplog.records if "context" in r.getMessage()]
