"""SFT throughput (tokens/s and examples/s) of the real stack: Ray Data corpus -> Ray Train
TorchTrainer -> DeepSpeed ZeRO-2, with 1 and 2 workers side by side in one run.

    python benchmarks/sft_throughput.py [--model DIR] [--steps 40] [--out benchmarks/results/sft_throughput.json]

Without --model it builds a tiny LLaVA first (short pretraining: the weights do not change the cost).
Figures are medians over the logged windows, the first (warm-up) window dropped.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
from pathlib import Path

from rlhfv_ray.training.sft import SFTConfig, run_sft


def tiny_model(directory: Path) -> Path:
    from rlhfv_ray.scene_world.build_model import BuildModelConfig, build_initial_model

    config = BuildModelConfig.model_validate({
        "out": str(directory), "vision_pretrain": {"scenes": 64, "steps": 2},
        "language_pretrain": {"scenes": 64, "steps": 2, "align_scenes": 64, "align_steps": 2, "eval_scenes": 0}})
    build_initial_model(config, log=lambda *_: None)
    return directory


def corpus(directory: Path) -> str:
    """The scene world's SFT corpus of 400 scenes, as the files `rlhfv sft --data` reads."""
    from rlhfv_ray.scene_world.data import SceneDataConfig, write_sft_corpus

    write_sft_corpus(SceneDataConfig(out=str(directory), sft_scenes=400))
    return str(directory / "sft" / "corpus.parquet")


def measure(model: Path, data: str, workers: int, steps: int, work: Path) -> dict:
    cpus = max(1, 2 // workers)
    config = SFTConfig.model_validate({
        "model": str(model), "out": str(work / f"sft_{workers}"), "data": data,
        "optim": {"max_steps": steps, "warmup_steps": 1, "global_batch_size": 32, "micro_batch_size": 32 // workers},
        "scaling": {"num_workers": workers, "cpus_per_worker": cpus},
        "checkpoint": {"storage_path": str(work / "ray_results"), "every_steps": 10_000},
        "log_every": 5, "run_name": f"bench-sft-{workers}w",
    })
    run_sft(config)
    out = Path(config.out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1:]
    return {"workers": workers, "cpus_per_worker": cpus, "steps": steps,
            "tokens_per_s": statistics.median(r["tokens_per_s"] for r in records),
            "examples_per_s": statistics.median(r["examples_per_s"] for r in records),
            "windows": len(records)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--out", default="benchmarks/results/sft_throughput.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = Path(args.model) if args.model else tiny_model(work / "model")
        data = corpus(work / "data")
        runs = [measure(model, data, workers, args.steps, work) for workers in (1, 2)]
    result = {"benchmark": "sft_throughput", "machine": {"cpus": __import__("os").cpu_count(),
                                                        "processor": platform.processor() or platform.machine()},
              "runs": runs, "scaling_2_vs_1": runs[1]["tokens_per_s"] / runs[0]["tokens_per_s"]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
