"""Does the shipped SFT base (rlhfv_ray/scene_world/base_model) come back from its recipe? Rebuilds
it as `rlhfv demo base=rebuild` does (scene data -> build-model -> SFT, about 25 minutes on 2
cores), then runs the scene benchmark on the rebuilt and the shipped base, scene by scene.

    python benchmarks/rebuild_base.py [--out runs/rebuild_base] [--eval-scenes 1000]

The bytes differ on another CPU kind (float order of the pretraining and SFT steps), the behaviour
should not: the rebuilt base reproduces the shipped one when its response-level hallucination rate
and VQA accuracy lie inside the shipped base's 95% intervals and its object recall within 0.03.
Stages are reused on a rerun with the same --out. Results: benchmarks/results/rebuild_base.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from machine import machine
from serve_common import write_json

from rlhfv_ray.config import load_config
from rlhfv_ray.eval.benchmark import compare_responses
from rlhfv_ray.scene_world.demo import SHIPPED_BASE, DemoConfig, stage_configs
from rlhfv_ray.stages import run_stage

from ddpo_common import benchmark_config, evaluate

OUT_NAME = "rebuild_base.json"


def rebuild(config: DemoConfig) -> str:
    """The demo's scene data, build-model and SFT stages; the rebuilt base's directory."""
    from rlhfv_ray.scene_world.build_model import build_initial_model
    from rlhfv_ray.scene_world.data import write_scene_data
    from rlhfv_ray.training.sft import run_sft

    c = stage_configs(config)
    data, build, sft = c["scene_data"], c["build_model"], c["sft"]
    run_stage("scene data", data, data.out, lambda: write_scene_data(data), reuse=True)
    run_stage("build model", build, build.out, lambda: build_initial_model(build), reuse=True)
    run_stage("sft", sft, sft.out, lambda: run_sft(sft), reuse=True, upstream=[build.out, data.out])
    return sft.out


def summary(metrics: dict) -> dict:
    keys = ("response_hallucination_rate", "object_recall", "vqa_accuracy")
    return {**{k: metrics[k] for k in keys},
            "ci95": {k: metrics["ci95"][k] for k in ("response_hallucination_rate", "vqa_accuracy")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/rebuild_base")
    parser.add_argument("--eval-scenes", type=int, help="benchmark scenes (default: the benchmark's 1000)")
    args = parser.parse_args()
    out = Path(args.out)
    config = load_config(DemoConfig, "configs/demo_tiny.yaml", [f"out_dir={out}", "base=rebuild"])
    rebuilt = rebuild(config)
    benchmark = benchmark_config(args)
    shipped_metrics = summary(evaluate(str(SHIPPED_BASE), out / "eval" / "shipped", benchmark, "shipped base"))
    rebuilt_metrics = summary(evaluate(rebuilt, out / "eval" / "rebuilt", benchmark, "rebuilt base"))
    paired = compare_responses(out / "eval" / "shipped" / "benchmark.json", out / "eval" / "rebuilt" / "benchmark.json")

    def inside(name: str) -> bool:
        low, high = shipped_metrics["ci95"][name]
        return low <= rebuilt_metrics[name] <= high

    checks = {"response_hallucination_inside_interval": inside("response_hallucination_rate"),
              "vqa_accuracy_inside_interval": inside("vqa_accuracy"),
              "object_recall_within_0.03": abs(rebuilt_metrics["object_recall"] - shipped_metrics["object_recall"]) <= 0.03}
    result = {"what": "the SFT base rebuilt from its recipe against the shipped one, on the scene benchmark",
              "command": "python benchmarks/rebuild_base.py", "machine": machine(),
              "shipped": shipped_metrics, "rebuilt": rebuilt_metrics,
              "paired_rebuilt_minus_shipped": paired["response_hallucination_rate"],
              "checks": checks, "reproduces": all(checks.values())}
    path = write_json(OUT_NAME, result)
    print(json.dumps({k: result[k] for k in ("shipped", "rebuilt", "checks", "reproduces")}, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
