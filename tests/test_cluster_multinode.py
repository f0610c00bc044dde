"""A training job on two Ray nodes, submitted as on a cluster: a head and a second node started with
`ray start` on this machine, `ray job submit --working-dir . -- python jobs/train.py` (DDPO with
rehearsal, so both of its datasets cross nodes), 2 Ray Train workers that must run on different
nodes, checkpoints and the model written to a storage path that both nodes reach (a local directory
here, S3 or a shared mount on a cluster). The SFT job runs through the same driver
(`trainer.fit_and_export`); it is tested on one node (`test_sft_ray.py`).

Each node offers 1 CPU and each worker takes 1, so the two workers cannot share a node: the run
crosses nodes (gloo between raylets, checkpoint shards from two nodes) as it would across machines."""

from __future__ import annotations

import shutil
import sys
import uuid
from pathlib import Path

import pytest

from local_cluster import LocalRayCluster

pytestmark = [pytest.mark.ray, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]


def _ddpo_overrides(model: Path, shards: Path, data: Path, shared: Path) -> list[str]:
    """The job's overrides; `out`, the checkpoints and the shards live on the shared storage (each
    node's Ray Data tasks read the shards)."""
    shutil.copytree(shards, shared / "shards")
    return [f"model={model}", f"shards={shared / 'shards'}", f"out={shared / 'model'}",
            f"checkpoint.storage_path={shared / 'ray_results'}", "checkpoint.every_steps=2",
            f"rehearsal.data={data / 'sft' / 'vqa.parquet'}", "optim.max_steps=4", "optim.warmup_steps=1",
            "optim.global_batch_size=4", "optim.micro_batch_size=2",
            "scaling.num_workers=2", "scaling.cpus_per_worker=1", "log_every=1"]


@pytest.fixture
def two_nodes():
    with LocalRayCluster() as cluster:
        cluster.start_head(num_cpus=1)
        cluster.add_node(num_cpus=1)
        yield cluster


def test_ddpo_job_trains_on_two_nodes_into_shared_storage(two_nodes, tiny_model_dir, tiny_shards, tiny_scene_data,
                                                          tmp_path):
    shared = tmp_path / "shared"  # the storage path every node reaches
    shared.mkdir()
    entrypoint = [sys.executable, "jobs/train.py", "--config", "configs/train_tiny.yaml",
                  *_ddpo_overrides(Path(tiny_model_dir), Path(tiny_shards), Path(tiny_scene_data), shared)]
    node_ids = {node["node_id"] for node in two_nodes.alive_nodes()}
    assert len(node_ids) == 2
    earlier = {worker["actor_id"] for worker in two_nodes.list_actors("RayTrainWorker")}

    outcome = two_nodes.submit_job(entrypoint, working_dir=str(ROOT), env_vars={"DS_ACCELERATOR": "cpu"},
                                   submission_id=f"multinode-ddpo-{uuid.uuid4().hex[:8]}", timeout=600)
    assert outcome.succeeded, f"{outcome.status}\n{outcome.output[-6000:]}"
    # the GCS keeps the finished run's worker actors: one on each node
    workers = [w for w in two_nodes.list_actors("RayTrainWorker") if w["actor_id"] not in earlier]
    assert len(workers) == 2
    assert {worker["node_id"] for worker in workers} == node_ids

    # The model is a save_pretrained directory in the shared storage path, loadable like LLaVA.
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model_dir = shared / "model"
    AutoModelForImageTextToText.from_pretrained(model_dir)
    AutoProcessor.from_pretrained(model_dir)
    # Both workers, on different nodes, wrote their DeepSpeed shards into the same checkpoint.
    checkpoints = sorted(p for p in (shared / "ray_results").glob("*/checkpoint_*") if p.is_dir())
    assert checkpoints
    for rank in (0, 1):
        assert list(checkpoints[-1].glob(f"state/zero_pp_rank_{rank}_*")), sorted(checkpoints[-1].rglob("*"))
