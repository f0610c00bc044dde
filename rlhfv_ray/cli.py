"""`rlhfv`: one command per job. Every job takes `--config FILE.yaml` and `dotted.key=value`
overrides; the thin scripts in `jobs/` call the same entry points (`python jobs/sft.py ...`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass, field
from typing import Sequence

from rlhfv_ray.config import ConfigError, load_config


@dataclass(frozen=True)
class Job:
    help: str
    config: str  # "module:ConfigClass", imported only when the job runs (keeps --help fast)
    runner: str  # "module:function" taking the validated config
    default_config: str | None = None
    flags: dict[str, str] = field(default_factory=dict)  # --flag -> config key shortcuts


JOBS: dict[str, Job] = {
    "build-model": Job(
        "build the initial tiny LLaVA (tokenizer, processor, pretrained vision tower)",
        "rlhfv_ray.model.bootstrap:BuildModelConfig", "rlhfv_ray.model.bootstrap:build_initial_model",
        "configs/build_model_tiny.yaml", {"--out": "out"}),
    "sft": Job(
        "supervised fine-tuning on the noisy world corpus (Ray Data + Ray Train + DeepSpeed)",
        "rlhfv_ray.training.sft:SFTConfig", "rlhfv_ray.training.sft:run_sft",
        "configs/sft_tiny.yaml", {"--model": "model", "--out": "out"}),
    "evaluate": Job(
        "hallucination benchmark of a checkpoint: JSON + Markdown table + PNG",
        "rlhfv_ray.eval.benchmark:EvaluateConfig", "rlhfv_ray.eval.benchmark:evaluate_checkpoint",
        "configs/evaluate_tiny.yaml", {"--model": "model", "--out": "out"}),
    "collect-feedback": Job(
        "describe fresh scenes with a model, correct them with the oracle, write RLHF-V parquet",
        "rlhfv_ray.data.feedback:FeedbackConfig", "rlhfv_ray.data.feedback:collect_feedback",
        "configs/collect_feedback_tiny.yaml", {"--model": "model", "--out": "out"}),
    "build-shards": Job(
        "RLHF-V records -> validated, segment-aligned shards with reference log-probs (Ray Data)",
        "rlhfv_ray.data.pipeline:ShardConfig", "rlhfv_ray.data.pipeline:build_shards",
        "configs/build_shards_tiny.yaml", {"--input": "input", "--model": "model", "--out": "out"}),
    "train": Job(
        "DDPO training on Ray Train + DeepSpeed over preference shards (gamma=1: vanilla DPO)",
        "rlhfv_ray.training.train_ddpo:DDPOConfig", "rlhfv_ray.training.train_ddpo:run_train",
        "configs/train_tiny.yaml", {"--model": "model", "--shards": "shards", "--out": "out"}),
    "demo": Job(
        "the end-to-end demo on the embedded scene world",
        "rlhfv_ray.demo:DemoConfig", "rlhfv_ray.demo:run_demo",
        "configs/demo_tiny.yaml", {"--out": "out_dir"}),
}


def _resolve(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhfv", description="RLHF-V on Ray: jobs of the pipeline")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, job in JOBS.items():
        p = sub.add_parser(name, help=job.help, description=job.help)
        p.add_argument("--config", default=job.default_config,
                       help=f"YAML config (default: {job.default_config}; 'none' for built-in defaults)")
        for flag, key in job.flags.items():
            p.add_argument(flag, dest=f"flag_{key}", metavar=key.upper(), help=f"shortcut for {key}=...")
        p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="dotted config overrides")
    return parser


def run_job(command: str, argv: Sequence[str] | None = None) -> int:
    """Parse `argv` for `command`, validate its config, run it. Returns a process exit code."""
    return main([command, *(sys.argv[1:] if argv is None else argv)])


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    job = JOBS[args.command]
    overrides = list(args.overrides)
    for key in job.flags.values():
        value = getattr(args, f"flag_{key}")
        if value is not None:
            overrides.append(f"{key}={value}")
    config_path = None if args.config in (None, "none") else args.config
    try:
        config = load_config(_resolve(job.config), config_path, overrides)
    except (ConfigError, FileNotFoundError) as error:
        print(f"rlhfv {args.command}: {error}", file=sys.stderr)
        return 2
    _resolve(job.runner)(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
