"""`rlhfv iterate --rounds K`: on-policy rounds of RLHF-V. Round k answers fresh prompts with the
round k-1 policy (round 1: the base), has the answers corrected, builds shards with that policy as
the reference, trains it with DDPO and evaluates the result; a report compares every round with the
one before it and with the base, scene by scene.

Prompts: round k takes rows [(k-1) n, k n) of the prompt set (n = `prompts_per_round`), so no round
sees another's prompts. Corrections: an annotator plug-in corrects them in `collect-feedback` (the
scene world's oracle); with `export` (humans) a round stops after writing the answers, and is
picked up where it stopped once its corrections are in `OUT/round-k/corrected/feedback.parquet`
(`rlhfv export-corrections` from the correction page, or `rlhfv merge-corrections`). Every stage is
skipped when its output exists for the same config and inputs, so a rerun resumes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
from pydantic import Field, model_validator

from rlhfv_ray.config import AwaitingHumans, StrictModel, save_resolved_config
from rlhfv_ray.data.feedback import (FEEDBACK_FILE, FeedbackConfig, FeedbackSection, collect_feedback,
                                     write_rlhfv_parquet)
from rlhfv_ray.data.pipeline import ShardConfig, ShardSection, build_shards
from rlhfv_ray.data.sources import Paths, read_local_rows
from rlhfv_ray.eval.benchmark import EvaluateConfig, compare_responses, evaluate_checkpoint
from rlhfv_ray.iterate_report import write_report
from rlhfv_ray.ray_runtime import RayConfig
from rlhfv_ray.stages import run_stage
from rlhfv_ray.training.train_ddpo import DDPOConfig, DDPOSection, run_train

logger = logging.getLogger(__name__)
CORRECTED = "corrected"


class IterateConfig(StrictModel):
    base: str  # the SFT base: round 1's policy and reference
    prompts: Paths = Field(min_length=1)  # the prompt set the rounds share out
    prompts_per_round: int = Field(gt=0)
    rounds: int = Field(2, ge=1)
    out: str
    reuse: bool = True
    feedback: FeedbackSection = FeedbackSection()
    shards: ShardSection = ShardSection()
    train: DDPOSection = DDPOSection()
    benchmark: str = "scene"
    benchmark_settings: dict = {}
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _benchmark_valid(self) -> "IterateConfig":
        EvaluateConfig(model=self.base, out="x.json", benchmark=self.benchmark, settings=self.benchmark_settings)
        return self


class RoundPrompts(StrictModel):
    """What a round's prompt slice depends on (not the rest of the config: more rounds reuse these)."""

    prompts: Paths
    prompts_per_round: int
    round: int


def round_dir(config: IterateConfig, k: int) -> Path:
    return Path(config.out) / f"round-{k}"


def write_round_prompts(config: IterateConfig, k: int, out: Path) -> int:
    rows, errors = read_local_rows(config.prompts)
    if errors:
        raise ValueError(f"{config.prompts}: {errors[0]}")
    n = config.prompts_per_round
    chosen = rows[(k - 1) * n: k * n]
    if len(chosen) < n:
        raise ValueError(f"round {k} needs prompts {(k - 1) * n}..{k * n - 1}; the prompt set has {len(rows)}")
    out.mkdir(parents=True, exist_ok=True)
    write_rlhfv_parquet(pd.DataFrame(chosen), out / "prompts.parquet")
    return len(chosen)


def evaluate(config: IterateConfig, name: str, model: str) -> dict:
    out = Path(config.out) / "eval" / name
    eval_config = EvaluateConfig(model=model, out=str(out / "benchmark.json"), benchmark=config.benchmark,
                                 settings=config.benchmark_settings, ray=config.ray)
    run_stage(f"evaluate {name}", eval_config, out, lambda: evaluate_checkpoint(eval_config), config.reuse,
              upstream=[model])
    return json.loads((out / "benchmark.json").read_text())


def run_round(config: IterateConfig, k: int, policy: str) -> str:
    """Round k from `policy`; returns the trained model's directory."""
    here = round_dir(config, k)
    prompts = here / "prompts"
    slice_config = RoundPrompts(prompts=config.prompts, prompts_per_round=config.prompts_per_round, round=k)
    run_stage(f"round {k} prompts", slice_config, prompts, lambda: write_round_prompts(config, k, prompts),
              config.reuse)
    feedback = FeedbackConfig.model_validate({**config.feedback.model_dump(), "model": policy,
                                              "out": str(here / "feedback"),
                                              "prompts": [str(prompts / "prompts.parquet")], "ray": config.ray})
    run_stage(f"round {k} collect-feedback", feedback, feedback.out, lambda: collect_feedback(feedback),
              config.reuse, upstream=[policy, prompts])
    pairs = Path(feedback.out) / FEEDBACK_FILE
    if config.feedback.annotator == "export":
        pairs = here / CORRECTED / FEEDBACK_FILE
        if not pairs.exists():
            raise AwaitingHumans(
                f"round {k}: the answers in {here / 'feedback' / 'awaiting.parquet'} await corrections. Serve them "
                f"with `rlhfv annotate tasks={here / 'feedback' / 'awaiting.parquet'}`, then `rlhfv export-corrections "
                f"--out {here / CORRECTED}`, and run `rlhfv iterate` again")
    shards = ShardConfig.model_validate({**config.shards.model_dump(), "input": [str(pairs)], "model": policy,
                                         "out": str(here / "shards"), "ray": config.ray})
    run_stage(f"round {k} build-shards", shards, shards.out, lambda: build_shards(shards), config.reuse,
              upstream=[feedback.out, policy])
    train = DDPOConfig.model_validate({**config.train.model_dump(), "model": policy, "shards": shards.out,
                                       "out": str(here / "model"), "ray": config.ray})
    run_stage(f"round {k} train", train, train.out, lambda: run_train(train, fresh=not config.reuse), config.reuse,
              upstream=[shards.out, policy])
    return train.out


def iterate(config: IterateConfig) -> dict:
    save_resolved_config(config, config.out)
    results = {"base": evaluate(config, "base", config.base)}
    policy = config.base
    for k in range(1, config.rounds + 1):
        policy = run_round(config, k, policy)
        results[f"round {k}"] = evaluate(config, f"round-{k}", policy)
    names = list(results)
    reports = {name: Path(config.out) / "eval" / name.replace(" ", "-") / "benchmark.json" for name in names}
    paired = {f"{b} - {a}": compare_responses(reports[a], reports[b]) for a, b in zip(names, names[1:])}
    paired.update({f"{name} - base": compare_responses(reports["base"], reports[name]) for name in names[2:]})
    pairs = {f"round {k}": _pair_count(round_dir(config, k)) for k in range(1, config.rounds + 1)}
    return write_report(Path(config.out), results, paired, pairs)


def _pair_count(here: Path) -> int:
    manifest = here / "shards" / "manifest.json"
    return json.loads(manifest.read_text())["sharded"] if manifest.exists() else 0
