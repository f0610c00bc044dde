"""What the DDPO benchmarks share: train a variant of a DDPO config and evaluate it, each a demo
stage (skipped when its output exists for the same config and inputs, so a rerun resumes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rlhfv_ray.config import load_config, validate_config
from rlhfv_ray.eval.benchmark import EvaluateConfig, evaluate_checkpoint
from rlhfv_ray.scene_world.benchmark import SceneBenchmark
from rlhfv_ray.stages import recorded_seconds, run_stage
from rlhfv_ray.training.train_ddpo import DDPOConfig, run_train
from rlhfv_ray.training.trainer import default_run_name


def evaluate(model: str, out: Path, benchmark: SceneBenchmark, label: str) -> dict:
    """The benchmark of `model` into OUT/benchmark.json (responses beside it); reused when done."""
    config = EvaluateConfig(model=model, out=str(out / "benchmark.json"), benchmark="scene",
                            settings=benchmark.model_dump(mode="json"))
    run_stage(f"evaluate {label}", config, out, lambda: evaluate_checkpoint(config), reuse=True, upstream=[model])
    return json.loads((out / "benchmark.json").read_text())


def train_variant(base: DDPOConfig, updates: dict, label: str, model_out: Path) -> tuple[DDPOConfig, float]:
    """DDPO with `base` changed by `updates` (nested dicts replace whole sections: pass them full)
    into `model_out`; (config, training seconds)."""
    values = {**base.model_dump(mode="json"), **updates, "out": str(model_out)}
    # One Ray Train run per variant; the config hash in its name means a changed setting starts a new
    # run instead of resuming (Ray Train resumes a run of the same name) one trained otherwise.
    config = validate_config(DDPOConfig, values)
    config = config.model_copy(update={"run_name": default_run_name(f"ddpo-{label}", config)})
    run_stage(f"train {label}", config, config.out, lambda: run_train(config), reuse=True)
    return config, recorded_seconds(config.out)


def add_common_arguments(parser: argparse.ArgumentParser, name: str) -> None:
    """--base, --shards, --out, --config, --set, --eval-scenes: what every DDPO benchmark takes."""
    parser.add_argument("--base", required=True, help="the SFT base = DDPO's initial and reference model")
    parser.add_argument("--shards", required=True, help="build-shards output made with --base as reference")
    parser.add_argument("--out", default=f"benchmarks/results/{name}")
    parser.add_argument("--config", default="configs/train_tiny.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override of the DDPO config (repeatable)")
    parser.add_argument("--eval-scenes", type=int, help="benchmark scenes (default: the benchmark's 1000)")


def load_base_config(args: argparse.Namespace, **owned) -> DDPOConfig:
    """The DDPO config of --config and --set, with model/shards/out/storage (and `owned`) set by the
    script (quoted: a path must stay a string); `out` is replaced again per variant."""
    out = Path(args.out)
    owned = {"model": args.base, "shards": args.shards, "out": str(out / "models"),
             "checkpoint.storage_path": str(out / "ray_results"), **owned}
    return load_config(DDPOConfig, args.config, [*args.set, *(f"{k}={json.dumps(v)}" for k, v in owned.items())])


def benchmark_config(args: argparse.Namespace) -> SceneBenchmark:
    return SceneBenchmark(**({"scenes": args.eval_scenes} if args.eval_scenes else {}))


def report_path(args: argparse.Namespace) -> Path:
    """OUT.json beside --out: one report per --out, so runs with different --out keep theirs."""
    out = Path(args.out)
    return out.parent / f"{out.name}.json"
