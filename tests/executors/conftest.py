"""One real two-node Ray cluster for the session's executor tests (started only if a test asks)."""

from __future__ import annotations

import pytest

from tests.executors.cluster import TestCluster

HEAD_MODELS = {"model:small": 2}  # "medium" is served nowhere: attempts on it are skipped
SECOND_MODELS = {"model:large": 1}


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    ray = pytest.importorskip("ray")
    cluster = TestCluster(tmp_path_factory.mktemp("ray"))
    try:
        cluster.start_head(HEAD_MODELS)
        cluster.start_second(SECOND_MODELS)
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        yield cluster
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.stop()
