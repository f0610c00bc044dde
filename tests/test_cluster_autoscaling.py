"""Autoscaling of cluster.yaml's A100 worker type, on this machine: Ray's autoscaler over the fake
multi-node provider (nodes are local Ray processes; their 8 GPUs are declared, nothing runs CUDA).

Demand made as the training jobs make it, a Ray Train worker group asking for GPUs, must make the
autoscaler start A100 nodes from zero; once the run ends, the idle nodes must go after the idle
timeout. The cluster is its own set of processes (`ray start`), and the demand comes from a separate
driver process, so the session's in-process Ray (tests/conftest.py) is not involved."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fake_autoscaler import gpu_node_types, load_cluster_config, start_fake_autoscaling_head
from local_cluster import LocalRayCluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
IDLE_TIMEOUT_MINUTES = 0.1


def test_gpu_demand_adds_a100_nodes_and_idle_nodes_are_removed(tmp_path):
    cluster_config = load_cluster_config(ROOT / "cluster.yaml")
    (a100_type, a100), = gpu_node_types(cluster_config).items()
    gpus_per_node = a100["resources"]["GPU"]
    with LocalRayCluster() as cluster:
        start_fake_autoscaling_head(cluster, cluster_config, cpus_per_node=1, max_workers_per_type=2,
                                    idle_timeout_minutes=IDLE_TIMEOUT_MINUTES)
        time.sleep(3)  # a few autoscaler rounds: with min_workers 0 and no demand, nothing starts
        assert cluster.worker_nodes() == []

        # Two Train workers of a whole node's GPUs each: only two new A100 nodes can hold them.
        out = tmp_path / "placement.json"
        driver = subprocess.Popen(
            [sys.executable, "-m", "rlhfv_ray.cluster.probe", "--num-workers=2", f"--gpus-per-worker={gpus_per_node}",
             "--cpus-per-worker=1", f"--storage-path={tmp_path / 'ray_results'}", f"--out={out}"],
            env={**cluster.env, "RAY_ADDRESS": cluster.address}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True)
        try:
            output, _ = driver.communicate(timeout=240)
        finally:
            driver.kill()
        assert driver.returncode == 0, output[-4000:]
        records = json.loads(out.read_text())

        # Each worker ran on its own node launched by the autoscaler (not the head), with the
        # resources of the a100_x8 type, and Ray gave it all of that node's GPUs.
        assert [r["rank"] for r in records] == [0, 1]
        assert len({r["node_id"] for r in records}) == 2
        for record in records:
            assert record["node_resources"]["GPU"] == gpus_per_node
            assert record["node_resources"]["accelerator_type:A100"] == 1
            assert len(record["gpu_ids"]) == gpus_per_node
            assert record["cuda_visible_devices"].split(",") == record["gpu_ids"]
        head_ids = {n["node_id"] for n in cluster.alive_nodes() if n["is_head_node"]}
        assert not head_ids & {r["node_id"] for r in records}

        # Demand gone: after the idle timeout (6 s) the autoscaler terminates both nodes, as idle.
        # The deadline only bounds a failing run (a loaded machine slows the monitor's rounds).
        removal_deadline = 60 * IDLE_TIMEOUT_MINUTES + 180
        cluster.wait_for(lambda: cluster.worker_nodes() == [], timeout=removal_deadline,
                         what="the idle A100 nodes to be removed")
        # Ray's own account of it, from the monitor's event summary (written in its next round, so
        # waited for too). At least two: Ray Train asks twice (its placement group, and
        # `request_resources` from its scaling policy), so the autoscaler may launch a third node
        # before the group is placed, and remove it again (over max_workers, or as idle).
        added = rf"Adding (\d+) node\(s\) of type {a100_type}\."
        removed_idle = rf"Removing (\d+) nodes of type {a100_type} \(idle\)\."
        try:
            cluster.wait_for(lambda: _count(_autoscaler_events(cluster), removed_idle) >= 2, timeout=60,
                             what="the monitor to log the idle removals")
        except TimeoutError:
            pass  # the assertions below show what the monitor did log
        events = _autoscaler_events(cluster)
        assert _count(events, added) >= 2, events
        assert _count(events, removed_idle) >= 2, events


def _autoscaler_events(cluster: LocalRayCluster) -> list[str]:
    """The autoscaler's event summary lines: what it launched and terminated, and why."""
    log = (cluster.temp_dir / "session_latest" / "logs" / "monitor.log").read_text()
    return [line.split(":event_summary:", 1)[1] for line in log.splitlines() if ":event_summary:" in line]


def _count(events: list[str], pattern: str) -> int:
    """Nodes summed over the events matching `pattern` (its group is a node count)."""
    return sum(int(m.group(1)) for m in map(re.compile(pattern).search, events) if m)
