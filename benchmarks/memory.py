"""Per-worker memory of training: full fine-tuning with ZeRO-0/2/3 and LoRA, side by side in one run.

    python benchmarks/memory.py [--layers 20] [--workers 2 4] [--steps 3] [--out benchmarks/results/memory.json]

A random LLaVA with a Llama decoder of a few hundred million parameters (hidden 1024, `--layers`
layers) is trained for a few SFT steps on the scene world's corpus through the real stack (Ray Data,
Ray Train, DeepSpeed, fp32 on CPU). Every worker logs the bytes of the parameters and optimizer
state it holds (master weights and moments, each storage once: `training/memory.py`) and its peak
resident memory; the figures are the last logged step's, averaged over workers.

What to expect per worker, with N workers and P parameters in fp32 (4 bytes each): ZeRO-0 holds
params 4P + Adam moments 8P = 12P; ZeRO-2 params 4P + master copy and moments 12P/N; ZeRO-3 all of
it partitioned, 16P/N, less its master copy where DeepSpeed keeps the fp32 partitions as the
parameters' own storage (ZeRO-3 in fp32: 12P/N). LoRA holds the frozen weights (4P, or 2P with
`lora.frozen_dtype: bfloat16`; 4P/N with ZeRO-3, which partitions the frozen weights too) plus a
small adapter state.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from machine import machine

from rlhfv_ray.training.sft import SFTConfig, run_sft

RUNS = {  # name -> config overrides
    "zero0": {"deepspeed": {"zero_stage": 0}},
    "zero2": {"deepspeed": {"zero_stage": 2}},
    "zero3": {"deepspeed": {"zero_stage": 3}},
    "lora_zero2": {"deepspeed": {"zero_stage": 2}, "lora": {"r": 16, "alpha": 32}},
    "lora_bf16_base_zero2": {"deepspeed": {"zero_stage": 2},
                             "lora": {"r": 16, "alpha": 32, "frozen_dtype": "bfloat16"}},
    "lora_zero3": {"deepspeed": {"zero_stage": 3}, "lora": {"r": 16, "alpha": 32}},
}


def random_llava(directory: Path, layers: int) -> int:
    """A random LLaVA (the world's tokenizer and processor, a 1024-wide Llama); returns its size."""
    from rlhfv_ray.scene_world.build_model import world_tokenizer
    from rlhfv_ray.scene_world.tiny_llava import TinyLlavaSpec, build_processor, build_tiny_llava

    spec = TinyLlavaSpec(text_hidden=1024, text_layers=layers, text_heads=16, text_intermediate=2816,
                         max_positions=512)
    tokenizer = world_tokenizer(spec.tokenizer_vocab_size)
    model = build_tiny_llava(tokenizer, spec)
    model.save_pretrained(directory)
    build_processor(tokenizer, spec).save_pretrained(directory)
    return sum(p.numel() for p in model.parameters())


def corpus(directory: Path) -> str:
    from rlhfv_ray.scene_world.data import SceneDataConfig, write_sft_corpus

    write_sft_corpus(SceneDataConfig(out=str(directory), sft_scenes=64))
    return str(directory / "sft" / "corpus.parquet")


def measure(name: str, model: Path, data: str, workers: int, steps: int, work: Path) -> dict:
    config = SFTConfig.model_validate({
        "model": str(model), "out": str(work / f"{name}_{workers}"), "data": data, "max_tokens": 512,
        "optim": {"max_steps": steps, "warmup_steps": 0, "global_batch_size": 2 * workers, "micro_batch_size": 2},
        "scaling": {"num_workers": workers, "cpus_per_worker": 1},
        "checkpoint": {"storage_path": str(work / "ray_results"), "every_steps": 10_000},
        "log_every": 1, "run_name": f"bench-memory-{name}-{workers}w", **RUNS[name],
    })
    run_sft(config)
    out = Path(config.out)
    last = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    keys = ("param_gib", "optimizer_gib", "peak_rss_gib")
    return {"run": name, "workers": workers, **{k: round(last[k], 4) for k in keys},
            "param_plus_optimizer_gib": round(last["param_gib"] + last["optimizer_gib"], 4)}


def ratios(runs: list[dict]) -> dict:
    by = {(r["run"], r["workers"]): r["param_plus_optimizer_gib"] for r in runs}
    out = {}
    for workers in sorted({r["workers"] for r in runs}):
        if ("zero3", workers) in by and ("zero2", workers) in by:
            out[f"zero3_over_zero2_{workers}w"] = round(by["zero3", workers] / by["zero2", workers], 3)
        for lora in ("lora_zero2", "lora_bf16_base_zero2", "lora_zero3"):
            for full in ("zero2", "zero0"):
                if (lora, workers) in by and (full, workers) in by:
                    out[f"{lora}_over_{full}_{workers}w"] = round(by[lora, workers] / by[full, workers], 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[2])
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/results/memory.json")
    args = parser.parse_args()
    import ray

    # more workers than cores is fine here: memory, not speed, is measured
    ray.init(num_cpus=max(args.workers) + 1, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"DS_ACCELERATOR": os.environ.get("DS_ACCELERATOR", "cpu")}})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        parameters = random_llava(work / "model", args.layers)
        data = corpus(work / "data")
        runs = [measure(name, work / "model", data, workers, args.steps, work)
                for workers in args.workers for name in args.runs]
    ray.shutdown()
    result = {"benchmark": "memory", "parameters": parameters, "layers": args.layers, "dtype": "float32",
              "machine": machine(),
              "runs": runs, "ratios": ratios(runs)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
