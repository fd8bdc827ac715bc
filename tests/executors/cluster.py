"""The executor tests' two-node Ray cluster: :class:`~kisystem.executors.local_cluster.LocalCluster`
with one CPU per node, ports in 18500-18651, and this repository on the workers' path (the
scripted models of ``tests.executors.support`` are unpickled there)."""

from __future__ import annotations

from pathlib import Path

from kisystem.executors.local_cluster import MARK_ENV, NODE_ENV, LocalCluster, Ports, free_ports

ROOT = Path(__file__).parents[2]
BLOCKS = (18500, 18580)  # a cluster's ports lie in one block of 72; a block a past run left busy is skipped


def TestCluster(temp_dir: Path) -> LocalCluster:  # the fixture's name for it since before the move
    return LocalCluster(temp_dir, BLOCKS, cpus=1, pythonpath=(str(ROOT),))


__all__ = ["BLOCKS", "MARK_ENV", "NODE_ENV", "ROOT", "LocalCluster", "Ports", "TestCluster", "free_ports"]
