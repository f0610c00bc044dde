"""`rlhfv`: one command per job. Every job takes `--config FILE.yaml` and `dotted.key=value`
overrides; the thin scripts in `jobs/` call the same entry points (`python jobs/sft.py ...`)."""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass, field
from typing import Sequence

from rlhfv_ray.config import AwaitingHumans, ConfigError, describe_fields, load_config
from rlhfv_ray.logs import configure_logging


@dataclass(frozen=True)
class Job:
    help: str
    config: str  # "module:ConfigClass", imported only when the job runs (keeps --help fast)
    runner: str  # "module:function" taking the validated config
    default_config: str | None = None
    flags: dict[str, str] = field(default_factory=dict)  # --flag -> config key shortcuts


JOBS: dict[str, Job] = {
    "sft": Job(
        "supervised fine-tuning on image + conversation data (LLaVA JSON or parquet; Ray Data + Ray Train)",
        "rlhfv_ray.training.sft:SFTConfig", "rlhfv_ray.training.sft:run_sft",
        None, {"--data": "data", "--image-folder": "image_folder", "--model": "model", "--out": "out"}),
    "collect-feedback": Job(
        "answer a prompt set with a model and hand the answers to an annotator; RLHF-V parquet out",
        "rlhfv_ray.data.feedback:FeedbackConfig", "rlhfv_ray.data.feedback:collect_feedback",
        None, {"--prompts": "prompts", "--model": "model", "--annotator": "annotator", "--out": "out"}),
    "merge-corrections": Job(
        "merge human corrections of exported answers into RLHF-V pairs",
        "rlhfv_ray.data.merge:MergeConfig", "rlhfv_ray.data.merge:merge_corrections",
        None, {"--answers": "answers", "--corrections": "corrections", "--out": "out"}),
    "annotate": Job(
        "the correction page for human annotators (SQLite; tasks from collect-feedback --annotator export)",
        "rlhfv_ray.annotation.app:AnnotateConfig", "rlhfv_ray.annotation.app:serve",
        None, {"--tasks": "tasks", "--db": "db", "--port": "port"}),
    "export-corrections": Job(
        "the annotation database's submitted corrections as RLHF-V pairs for build-shards",
        "rlhfv_ray.annotation.export:ExportConfig", "rlhfv_ray.annotation.export:export_corrections",
        None, {"--db": "db", "--out": "out"}),
    "build-shards": Job(
        "RLHF-V records -> validated, segment-aligned shards with reference log-probs (Ray Data)",
        "rlhfv_ray.data.pipeline:ShardConfig", "rlhfv_ray.data.pipeline:build_shards",
        None, {"--input": "input", "--model": "model", "--out": "out"}),
    "train": Job(
        "DDPO training on Ray Train + DeepSpeed over preference shards (gamma=1: vanilla DPO)",
        "rlhfv_ray.training.train_ddpo:DDPOConfig", "rlhfv_ray.training.train_ddpo:run_train",
        None, {"--model": "model", "--shards": "shards", "--out": "out"}),
    "evaluate": Job(
        "run a benchmark (scene, coco, or a plug-in) on a checkpoint: JSON + Markdown table + PNG",
        "rlhfv_ray.eval.benchmark:EvaluateConfig", "rlhfv_ray.eval.benchmark:evaluate_checkpoint",
        None, {"--model": "model", "--benchmark": "benchmark", "--out": "out"}),
    "iterate": Job(
        "on-policy rounds: answer fresh prompts with the last policy, correct, build shards, train, evaluate",
        "rlhfv_ray.iterate:IterateConfig", "rlhfv_ray.iterate:iterate",
        None, {"--rounds": "rounds", "--base": "base", "--out": "out"}),
    # the embedded scene world
    "build-model": Job(
        "scene world: build the initial tiny LLaVA (tokenizer, processor, pretrained towers)",
        "rlhfv_ray.scene_world.build_model:BuildModelConfig", "rlhfv_ray.scene_world.build_model:build_initial_model",
        "configs/build_model_tiny.yaml", {"--out": "out"}),
    "scene-data": Job(
        "scene world: write its SFT corpus and feedback prompt set as user data files",
        "rlhfv_ray.scene_world.data:SceneDataConfig", "rlhfv_ray.scene_world.data:write_scene_data",
        None, {"--out": "out"}),
    "demo": Job(
        "scene world: the pipeline end to end",
        "rlhfv_ray.scene_world.demo:DemoConfig", "rlhfv_ray.scene_world.demo:run_demo",
        "configs/demo_tiny.yaml", {"--out": "out_dir"}),
}


def _resolve(target: str):
    module, name = target.split(":")
    return getattr(importlib.import_module(module), name)


def _parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; the options of `command` (when given) listed with their defaults in its help."""
    parser = argparse.ArgumentParser(prog="rlhfv", description="RLHF-V on Ray: jobs of the pipeline")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, job in JOBS.items():
        epilog = None
        if name == command:  # importing a config class costs a second: only the one asked for
            epilog = "config keys (key=value; default):\n" + "\n".join(
                "  " + line for line in describe_fields(_resolve(job.config)))
        p = sub.add_parser(name, help=job.help, description=job.help, epilog=epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
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
    argv = list(sys.argv[1:] if argv is None else argv)
    configure_logging()
    args = _parser(next((a for a in argv if a in JOBS), None)).parse_args(argv)
    job = JOBS[args.command]
    overrides = list(args.overrides)
    for key in job.flags.values():
        value = getattr(args, f"flag_{key}")
        if value is not None:
            overrides.append(f"{key}={value}")
    config_path = None if args.config in (None, "none") else args.config
    try:
        config = load_config(_resolve(job.config), config_path, overrides)
    except (ConfigError, FileNotFoundError, ValueError) as error:
        print(f"rlhfv {args.command}: {error}", file=sys.stderr)
        return 2
    try:
        _resolve(job.runner)(config)
    except FileNotFoundError as error:  # a path the user gave: their error, said in one line
        print(f"rlhfv {args.command}: {error}", file=sys.stderr)
        return 2
    except AwaitingHumans as waiting:  # not an error: the job stopped where people take over
        print(f"rlhfv {args.command}: {waiting}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
