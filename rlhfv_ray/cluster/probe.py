"""Where do Ray Train workers land? A Ray Train run whose workers do nothing but say which node they
run on, what that node offers, and which GPUs Ray gave them. On a fresh cluster it checks that GPU
workers reach the A100 nodes (and makes the autoscaler start them) before a real job does:

    ray job submit -- python -m rlhfv_ray.cluster.probe --num-workers 16 --gpus-per-worker 1 \\
        --storage-path s3://YOUR-BUCKET/rlhfv/probe

It asks for resources exactly as the training jobs do (a Ray Train worker group: one placement group
bundle per worker), so the autoscaler sees the same demand. Nothing runs CUDA: it also works where
GPUs are only declared (the autoscaler's fake nodes in the tests).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence


def _worker(config: dict) -> None:
    import ray
    import ray.train

    context = ray.get_runtime_context()
    node_id = context.get_node_id()
    node = next(n for n in ray.nodes() if n["NodeID"] == node_id)
    ray.get(config["collector"].add.remote({
        "rank": ray.train.get_context().get_world_rank(),
        "node_id": node_id,
        "node_resources": node["Resources"],
        "gpu_ids": [str(i) for i in context.get_accelerator_ids().get("GPU", [])],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }))


def probe_placement(num_workers: int, gpus_per_worker: int, cpus_per_worker: int, storage_path: str,
                    placement_strategy: str = "PACK") -> list[dict]:
    """Run the probe on the connected Ray; one record per worker, by rank."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    @ray.remote(num_cpus=0)
    class Collector:  # the workers' records come back through it: Train returns only rank 0's metrics
        def __init__(self):
            self.records = []

        def add(self, record: dict) -> None:
            self.records.append(record)

        def get(self) -> list[dict]:
            return sorted(self.records, key=lambda r: r["rank"])

    collector = Collector.remote()
    resources = {"CPU": cpus_per_worker}
    if gpus_per_worker:
        resources["GPU"] = gpus_per_worker
    trainer = DataParallelTrainer(
        _worker, train_loop_config={"collector": collector},
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=gpus_per_worker > 0,
                                     resources_per_worker=resources, placement_strategy=placement_strategy),
        run_config=RunConfig(name="placement-probe", storage_path=storage_path))
    trainer.fit()
    return ray.get(collector.get.remote())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-workers", type=int, default=2)
    parser.add_argument("--gpus-per-worker", type=int, default=1)
    parser.add_argument("--cpus-per-worker", type=int, default=1)
    parser.add_argument("--placement-strategy", default="PACK", choices=["PACK", "SPREAD", "STRICT_PACK",
                                                                          "STRICT_SPREAD"])
    parser.add_argument("--storage-path", required=True, help="Ray Train storage (a shared dir or s3://...)")
    parser.add_argument("--out", help="also write the records to this JSON file")
    args = parser.parse_args(argv)

    import ray

    ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
    records = probe_placement(args.num_workers, args.gpus_per_worker, args.cpus_per_worker, args.storage_path,
                              args.placement_strategy)
    text = json.dumps(records, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
