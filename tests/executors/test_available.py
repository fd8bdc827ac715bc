"""Which models a session may use with the ray executor: those the cluster's live nodes declare
(a fake cluster view, no Ray processes); the local path still asks each endpoint itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from kisystem.config import OptimizationConfig
from kisystem.errors import BackendUnreachable
from kisystem.executors import LocalExecutor
from kisystem.executors.ray_executor import RayExecutor, RaySettings
from kisystem.loop.session import loop_session, reachable_models
from kisystem.paths import Paths
from tests.executors.test_placement import FakeRay, node
from tests.queue.support import INVENTORY  # small, medium, large on endpoints nothing listens at


def ray_view(*nodes: dict) -> RayExecutor:
    return RayExecutor(ray=FakeRay(*nodes), settings=RaySettings(address="10.0.0.1:6379"))


def test_a_model_a_live_node_declares_is_available_one_declared_nowhere_is_not() -> None:
    warnings: list[str] = []
    executor = ray_view(node("a", model__small=2), node("b", alive=False, model__large=1),
                        node("c", model__medium=0, model__other=1))
    assert executor.available_models(INVENTORY, warnings.append) == {"small"}
    assert warnings == [f"model {m!r} is served by no live node of the Ray cluster; it is skipped "
                        f"(start one with `kisystem ray node --serves {m}`)" for m in ("large", "medium")]


def test_a_cluster_serving_none_of_the_models_is_one_clear_error() -> None:
    with pytest.raises(BackendUnreachable, match=r"^no model of queue test inventory is served by a live node of the "
                       r"Ray cluster at 10.0.0.1:6379 \(its nodes declare other\); start one with "
                       r"`kisystem ray node --serves MODEL`$"):
        ray_view(node("a", model__other=1)).available_models(INVENTORY, lambda msg: None)


async def test_the_local_path_still_asks_each_endpoint_from_here() -> None:
    warnings: list[str] = []
    assert await reachable_models(INVENTORY, warnings.append, LocalExecutor()) == set()
    assert len(warnings) == 2 and all(w.startswith("skipping ") for w in warnings)  # one per endpoint


async def test_a_ray_session_uses_the_models_the_nodes_declare_not_what_it_reaches_itself(tmp_path: Path) -> None:
    warnings: list[str] = []
    executor = ray_view(node("a", model__small=1), node("b", model__large=2))
    async with loop_session(OptimizationConfig(), INVENTORY, Paths.resolve(tmp_path), warn=warnings.append,
                            executor=executor) as sup:  # fmt: skip
        assert sup.available == {"small", "large"} and sup.executor is executor
    assert not any(w.startswith("skipping") for w in warnings)  # no endpoint was asked from here
    assert any("'medium' is served by no live node" in w for w in warnings)
    with pytest.raises(BackendUnreachable, match="no model of queue test inventory is reachable"):
        async with loop_session(OptimizationConfig(), INVENTORY, Paths.resolve(tmp_path / "local"),
                                warn=warnings.append):  # fmt: skip
            pass
