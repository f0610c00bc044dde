"""The autoscaler of `cluster.yaml`, on one machine: Ray's fake multi-node provider launches "nodes"
as local Ray processes with the resources a node type declares (GPUs included: they are only
numbers to the scheduler, nothing runs CUDA), so scale-up on demand and scale-down after the idle
timeout run through Ray's own autoscaler, as on AWS.

The worker types come from `cluster.yaml` itself: same names, same GPU and custom resources, with
CPUs and counts shrunk so that a fake node stays a few light processes.

Ray's `ray.cluster_utils.AutoscalingCluster` does the same for Ray's tests but cannot be used here:
it runs a global `ray stop --force` (ending every Ray on the machine) and its template,
`fake_multi_node/example.yaml`, is not shipped in the 2.60 wheel.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from local_cluster import OBJECT_STORE_BYTES, LocalRayCluster

FAKE_HEAD_TYPE = "ray.head.default"  # the fake provider's name for the head node type
# What the fake provider needs beyond node types; the rest of a launcher config has no meaning
# without machines (no ssh, docker, setup commands).
_FAKE_BASE = {
    "cluster_name": "fake_multinode",
    "upscaling_speed": 1.0,
    "auth": {},
    "docker": {},
    "file_mounts": {},
    "cluster_synced_files": [],
    "file_mounts_sync_continuously": False,
    "rsync_exclude": [],
    "rsync_filter": [],
    "initialization_commands": [],
    "setup_commands": [],
    "head_setup_commands": [],
    "worker_setup_commands": [],
    "head_start_ray_commands": [],
    "worker_start_ray_commands": [],
}


def load_cluster_config(path: str | Path = "cluster.yaml") -> dict:
    return yaml.safe_load(Path(path).read_text())


def gpu_node_types(cluster_config: dict) -> dict[str, dict]:
    """The worker node types of a launcher config that offer GPUs."""
    head = cluster_config["head_node_type"]
    return {name: spec for name, spec in cluster_config["available_node_types"].items()
            if name != head and spec.get("resources", {}).get("GPU", 0) > 0}


def fake_autoscaling_config(cluster_config: dict, gcs_address: str, cpus_per_node: int = 1,
                            max_workers_per_type: int = 2, idle_timeout_minutes: float = 0.1) -> dict:
    """A fake-provider config with the GPU worker types of `cluster_config`: their GPU and custom
    resources as declared, `cpus_per_node` CPUs, at most `max_workers_per_type` nodes each, min 0.
    The head offers no CPU or GPU, as in `cluster.yaml`."""
    node_types = {FAKE_HEAD_TYPE: {"resources": {"CPU": 0, "GPU": 0, "object_store_memory": OBJECT_STORE_BYTES},
                                   "node_config": {}, "max_workers": 0}}
    for name, spec in gpu_node_types(cluster_config).items():
        resources = copy.deepcopy(spec["resources"])
        resources.update(CPU=cpus_per_node, object_store_memory=OBJECT_STORE_BYTES)
        node_types[name] = {"resources": resources, "node_config": {}, "min_workers": 0,
                            "max_workers": min(max_workers_per_type, spec.get("max_workers", max_workers_per_type))}
    return {
        **copy.deepcopy(_FAKE_BASE),
        "max_workers": sum(t["max_workers"] for t in node_types.values()),
        "idle_timeout_minutes": idle_timeout_minutes,
        # launch_multiple: a request for n nodes starts n (by default the fake provider starts one
        # per request, whatever n, which a cloud provider does not do).
        "provider": {"type": "fake_multinode", "gcs_address": gcs_address, "launch_multiple": True,
                     "use_node_id_as_ip": True, "disable_node_updaters": True, "disable_launch_config_check": True},
        "available_node_types": node_types,
        "head_node_type": FAKE_HEAD_TYPE,
    }


def start_fake_autoscaling_head(cluster: LocalRayCluster, cluster_config: dict, **fake_options) -> dict:
    """Start `cluster`'s head with an autoscaler over the fake provider; returns the config used.
    Worker nodes then appear and disappear on their own; `cluster.stop()` ends them too (they live
    in the head's temp dir)."""
    from loadgen import free_port

    # The provider needs the GCS address up front, so the head's port is chosen here.
    port = free_port()
    config = fake_autoscaling_config(cluster_config, f"{cluster.node_ip}:{port}", **fake_options)
    path = cluster.temp_dir / "fake_autoscaling.json"
    path.write_text(json.dumps(config, indent=2))
    cluster.start_head(num_cpus=0, num_gpus=0, autoscaling_config=str(path), port=port,
                       # RAY_FAKE_CLUSTER selects the fake provider's behaviour in `ray start` and the
                       # monitor; a 1 s autoscaler loop (default 5 s) keeps the test short.
                       env={"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"})
    return config
