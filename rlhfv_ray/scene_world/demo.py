"""`make demo` / `rlhfv demo`: the pipeline end to end on the embedded scene world.

Stages (each skipped when its output exists for the same config and the same runs of the stages it
reads, unless `reuse=false`): initial model and the world's data files (SFT corpus, prompt set) ->
SFT base -> feedback (base answers corrected by the oracle annotator) -> segment-aligned shards with
reference log-probs -> DDPO (gamma > 1) and vanilla DPO (gamma = 1) on the same pairs and budget ->
the scene benchmark of base, DDPO and DPO. Every stage after the world's own is the generic job a
user runs on their data, given the world's files and plug-ins (`scene-oracle`, `scene`). The report
(`report.json`, `report.md`, `report.png`) lands in `out_dir`.
"""

from __future__ import annotations

import json
from pathlib import Path

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
from rlhfv_ray.stages import recorded_seconds, run_stage
from rlhfv_ray.training.sft import SFTSection, SFTConfig, run_sft
from rlhfv_ray.training.train_ddpo import DDPOConfig, DDPOSection, run_train


class DemoConfig(StrictModel):
    out_dir: str = "runs/demo"
    reuse: bool = True
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


def stage_configs(config: DemoConfig) -> dict:
    """Every stage's job config, in order: the same configs a user gives the generic jobs."""
    out = Path(config.out_dir)
    build = BuildModelConfig.model_validate(
        {**config.model.model_dump(), "out": str(out / "init_model"), "world": config.world})
    data = SceneDataConfig.model_validate({**config.data.model_dump(), "out": str(out / "data"), "world": config.world})
    corpus = Path(data.out) / SFT_DIR
    sft = SFTConfig.model_validate({**config.sft.model_dump(), "data": str(corpus / CORPUS_FILE), "model": build.out,
                                    "out": str(out / "base_model"), "ray": config.ray})
    feedback = FeedbackConfig.model_validate({**config.feedback.model_dump(), "model": sft.out,
                                              "prompts": str(Path(data.out) / PROMPTS_FILE),
                                              "out": str(out / "feedback"), "ray": config.ray})
    shards = ShardConfig.model_validate({**config.shards.model_dump(), "input": [str(out / "feedback" / FEEDBACK_FILE)],
                                         "model": sft.out, "out": str(out / "shards"), "ray": config.ray})
    configs = {"build_model": build, "scene_data": data, "sft": sft, "evaluate_base": _eval_config(config, "base", sft.out),
               "collect_feedback": feedback, "build_shards": shards}
    # the same pairs, steps and hyper-parameters; vanilla DPO only sets gamma = 1 (paper Table 3)
    for name, gamma in (("ddpo", config.ddpo.ddpo.gamma), ("dpo", 1.0)):
        section = config.ddpo.model_dump()
        section["ddpo"]["gamma"] = gamma
        if section["rehearsal"]["weight"] > 0:  # the SFT corpus's questions keep short answers short
            section["rehearsal"]["data"] = [str(corpus / VQA_FILE)]
        configs[f"train_{name}"] = DDPOConfig.model_validate({**section, "model": sft.out, "shards": shards.out,
                                                              "out": str(out / f"{name}_model"), "ray": config.ray})
        configs[f"evaluate_{name}"] = _eval_config(config, name, configs[f"train_{name}"].out)
    return configs


def run_demo(config: DemoConfig) -> dict:
    out = Path(config.out_dir)
    save_resolved_config(config, out)
    c = stage_configs(config)
    stage_dirs: dict[str, Path] = {}
    reused: list[str] = []

    def stage(key: str, name: str, out_dir, action, upstream=()) -> None:
        stage_dirs[key] = Path(out_dir)
        _, seconds = run_stage(name, c[key], out_dir, action, config.reuse, upstream=upstream)
        if seconds == 0.0:  # run_stage's answer for a reused stage
            reused.append(key)

    def evaluate(name: str) -> dict:
        eval_config = c[f"evaluate_{name}"]
        stage(f"evaluate_{name}", f"evaluate {name}", Path(eval_config.out).parent / name,
              lambda: evaluate_checkpoint(eval_config), upstream=[eval_config.model])
        return json.loads(Path(eval_config.out).read_text())

    build, data, sft = c["build_model"], c["scene_data"], c["sft"]
    stage("build_model", "build-model", build.out, lambda: build_initial_model(build))
    stage("scene_data", "scene-data", data.out, lambda: write_scene_data(data))
    stage("sft", "sft", sft.out, lambda: run_sft(sft), upstream=[build.out, data.out])
    results = {"base": evaluate("base")}
    feedback, shards = c["collect_feedback"], c["build_shards"]
    stage("collect_feedback", "collect-feedback", feedback.out, lambda: collect_feedback(feedback),
          upstream=[sft.out, data.out])
    stage("build_shards", "build-shards", shards.out, lambda: build_shards(shards), upstream=[feedback.out, sft.out])
    for name in ("ddpo", "dpo"):
        train = c[f"train_{name}"]
        stage(f"train_{name}", f"train {name}", train.out, lambda: run_train(train),
              upstream=[shards.out, sft.out, data.out])
        results[name] = evaluate(name)
    # rates differ by a few points between models, as much as one benchmark's sampling error: the
    # models answer the same scenes, so compare them scene by scene (eval/stats.py)
    paired = {f"{b} - {a}": compare_responses(_eval_json(config, a), _eval_json(config, b))
              for a, b in (("base", "ddpo"), ("base", "dpo"), ("dpo", "ddpo"))}
    # what each stage took when it ran, also when this run reused its output
    report = {**results, "paired": paired,
              "stage_seconds": {key: recorded_seconds(path) for key, path in stage_dirs.items()},
              "reused_stages": reused}
    (out / "report.json").write_text(json.dumps(report, indent=2))
    table = markdown_table(results) + "\n" + paired_table(paired)
    (out / "report.md").write_text(table)
    plot_metrics(results, out / "report.png")
    print("\n" + table)
    print(f"report: {out / 'report.json'}")
    return report
