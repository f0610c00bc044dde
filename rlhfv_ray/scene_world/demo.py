"""`make demo` / `rlhfv demo`: the pipeline end to end on the embedded scene world.

It starts where a user starts: from a model that hallucinates. That SFT base ships with the package
(`base_model/`, the tiny LLaVA in fp16, a few MB): building it takes about 25 minutes on 2 cores and
its floats differ between CPU kinds, so a shipped base makes the demo short and the same start on
every machine. `base=rebuild` builds it again from its recipe (`base_model/recipe.yaml`, which
equals this config's `world`, `model`, `data` and `sft` sections): initial model, then SFT.

Stages (each skipped when its output exists for the same config and the same runs of the stages it
reads, unless `reuse=false`): the world's data files (SFT corpus, prompt set) -> [initial model ->
SFT base] -> feedback (base answers corrected by the oracle annotator) -> segment-aligned shards with
reference log-probs -> DDPO -> the scene benchmark of base and DDPO; `dpo=true` adds vanilla DPO
(gamma = 1) on the same pairs and budget. Every stage after the world's own is the generic job a
user runs on their data, given the world's files and plug-ins (`scene-oracle`, `scene`). The report
(`report.json`, `report.md`, `report.png`) lands in `out_dir`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Literal

from rlhfv_ray.config import StrictModel, save_resolved_config
from rlhfv_ray.data.feedback import FEEDBACK_FILE, FeedbackConfig, FeedbackSection, collect_feedback
from rlhfv_ray.data.pipeline import ShardConfig, ShardSection, build_shards
from rlhfv_ray.eval.benchmark import EvaluateConfig, compare_responses, evaluate_checkpoint
from rlhfv_ray.eval.report import markdown_table, paired_table, plot_metrics
from rlhfv_ray.ray_runtime import RayConfig
from rlhfv_ray.scene_world.benchmark import SceneBenchmark
from rlhfv_ray.scene_world.build_model import BuildModelConfig, BuildModelSection, build_initial_model
from rlhfv_ray.scene_world.data import (CORPUS_FILE, PROMPTS_FILE, SFT_DIR, VQA_FILE, SceneDataConfig,
                                        SceneDataSection, write_scene_data)
from rlhfv_ray.scene_world.spec import WorldParams
from rlhfv_ray.stages import Progress, minutes, recorded_seconds, run_stage
from rlhfv_ray.training.sft import SFTSection, SFTConfig, run_sft
from rlhfv_ray.training.train_ddpo import DDPOConfig, DDPOSection, run_train


SHIPPED_BASE = Path(__file__).parent / "base_model"
RECIPE_FILE = "recipe.yaml"  # in SHIPPED_BASE: the demo config sections that rebuild it
RECIPE_SECTIONS = ("world", "model", "data", "sft")
# Seconds each stage took on 2 cores of an AMD EPYC: the shape of the time-left estimate, which
# scales them by how fast this machine runs the stages already done.
TYPICAL_SECONDS = {"scene_data": 8, "build_model": 1290, "sft": 325, "evaluate_base": 30, "collect_feedback": 60,
                   "build_shards": 45, "train_ddpo": 455, "evaluate_ddpo": 30, "train_dpo": 445, "evaluate_dpo": 30}
logger = logging.getLogger(__name__)


class DemoConfig(StrictModel):
    out_dir: str = "runs/demo"
    reuse: bool = True
    base: Literal["shipped", "rebuild"] = "shipped"  # the SFT base: shipped, or rebuilt from its recipe
    dpo: bool = False  # also vanilla DPO (gamma = 1) on the same pairs and budget
    world: WorldParams = WorldParams()
    model: BuildModelSection = BuildModelSection()
    data: SceneDataSection = SceneDataSection()
    sft: SFTSection = SFTSection()
    feedback: FeedbackSection = FeedbackSection(annotator="scene-oracle")
    shards: ShardSection = ShardSection()
    ddpo: DDPOSection = DDPOSection()
    benchmark: SceneBenchmark = SceneBenchmark()
    ray: RayConfig = RayConfig()


def _eval_json(config: DemoConfig, name: str) -> Path:
    return Path(config.out_dir) / "eval" / f"{name}.json"


def _eval_config(config: DemoConfig, name: str, model_dir: str) -> EvaluateConfig:
    settings = config.benchmark.model_copy(update={"world": config.world}).model_dump(mode="json")
    return EvaluateConfig(model=model_dir, out=str(_eval_json(config, name)), benchmark="scene", settings=settings)


def recipe(config: DemoConfig) -> dict:
    """The sections of `config` that make the SFT base (what `base_model/recipe.yaml` records),
    without the settings that only say where and how often a run reports."""
    reporting = {"tracking", "checkpoint", "log_every"}
    return config.model_dump(mode="json", include=set(RECIPE_SECTIONS), exclude={"sft": reporting})


def stage_configs(config: DemoConfig) -> dict:
    """Every stage's job config, in order: the same configs a user gives the generic jobs."""
    out = Path(config.out_dir)
    data = SceneDataConfig.model_validate({**config.data.model_dump(), "out": str(out / "data"), "world": config.world})
    corpus = Path(data.out) / SFT_DIR
    configs: dict = {"scene_data": data}
    base = str(SHIPPED_BASE)
    if config.base == "rebuild":
        build = BuildModelConfig.model_validate(
            {**config.model.model_dump(), "out": str(out / "init_model"), "world": config.world})
        sft = SFTConfig.model_validate({**config.sft.model_dump(), "data": str(corpus / CORPUS_FILE),
                                        "model": build.out, "out": str(out / "base_model"), "ray": config.ray})
        configs.update(build_model=build, sft=sft)
        base = sft.out
    feedback = FeedbackConfig.model_validate({**config.feedback.model_dump(), "model": base,
                                              "prompts": str(Path(data.out) / PROMPTS_FILE),
                                              "out": str(out / "feedback"), "ray": config.ray})
    shards = ShardConfig.model_validate({**config.shards.model_dump(), "input": [str(out / "feedback" / FEEDBACK_FILE)],
                                         "model": base, "out": str(out / "shards"), "ray": config.ray})
    configs.update(evaluate_base=_eval_config(config, "base", base), collect_feedback=feedback, build_shards=shards)
    # the same pairs, steps and hyper-parameters; vanilla DPO only sets gamma = 1 (paper Table 3)
    variants = {"ddpo": config.ddpo.ddpo.gamma, **({"dpo": 1.0} if config.dpo else {})}
    for name, gamma in variants.items():
        section = config.ddpo.model_dump()
        section["ddpo"]["gamma"] = gamma
        if section["rehearsal"]["weight"] > 0:  # the SFT corpus's questions keep short answers short
            section["rehearsal"]["data"] = [str(corpus / VQA_FILE)]
        configs[f"train_{name}"] = DDPOConfig.model_validate({**section, "model": base, "shards": shards.out,
                                                              "out": str(out / f"{name}_model"), "ray": config.ray})
        configs[f"evaluate_{name}"] = _eval_config(config, name, configs[f"train_{name}"].out)
    return configs


def run_demo(config: DemoConfig) -> dict:
    out = Path(config.out_dir)
    save_resolved_config(config, out)
    c = stage_configs(config)
    progress = Progress({key: TYPICAL_SECONDS[key] for key in c})
    stage_dirs: dict[str, Path] = {}
    reused: list[str] = []

    def stage(key: str, out_dir, action, upstream=()) -> None:
        stage_dirs[key] = Path(out_dir)
        logger.info(progress.line(key))
        name = key.replace("_", " ")
        _, seconds = run_stage(name, c[key], out_dir, action, config.reuse, upstream=upstream)
        progress.finish(key, seconds)
        if seconds == 0.0:  # run_stage's answer for a reused stage
            reused.append(key)

    def evaluate(name: str) -> dict:
        eval_config = c[f"evaluate_{name}"]
        stage(f"evaluate_{name}", Path(eval_config.out).parent / name, lambda: evaluate_checkpoint(eval_config),
              upstream=[eval_config.model])
        return json.loads(Path(eval_config.out).read_text())

    data, feedback, shards = c["scene_data"], c["collect_feedback"], c["build_shards"]
    stage("scene_data", data.out, lambda: write_scene_data(data))
    if config.base == "rebuild":
        build, sft = c["build_model"], c["sft"]
        stage("build_model", build.out, lambda: build_initial_model(build))
        stage("sft", sft.out, lambda: run_sft(sft, fresh=not config.reuse), upstream=[build.out, data.out])
    base = feedback.model
    results = {"base": evaluate("base")}
    stage("collect_feedback", feedback.out, lambda: collect_feedback(feedback), upstream=[base, data.out])
    stage("build_shards", shards.out, lambda: build_shards(shards), upstream=[feedback.out, base])
    variants = [k[len("train_"):] for k in c if k.startswith("train_")]
    for name in variants:
        train = c[f"train_{name}"]
        stage(f"train_{name}", train.out, lambda: run_train(train, fresh=not config.reuse),
              upstream=[shards.out, base, data.out])
        results[name] = evaluate(name)
    # rates differ by a few points between models, as much as one benchmark's sampling error: the
    # models answer the same scenes, so compare them scene by scene (eval/stats.py)
    pairs = [("base", name) for name in variants] + ([("dpo", "ddpo")] if "dpo" in variants else [])
    paired = {f"{b} - {a}": compare_responses(_eval_json(config, a), _eval_json(config, b)) for a, b in pairs}
    # what each stage took when it ran, also when this run reused its output
    report = {**results, "paired": paired,
              "stage_seconds": {key: recorded_seconds(path) for key, path in stage_dirs.items()},
              "reused_stages": reused, "demo_seconds": progress.elapsed_seconds()}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    table = markdown_table(results) + "\n" + paired_table(paired)
    (out / "report.md").write_text(table)
    plot_metrics(results, out / "report.png")
    logger.info("demo done in %s; report: %s\n\n%s", minutes(progress.elapsed_seconds()), out / "report.md", table)
    return report
