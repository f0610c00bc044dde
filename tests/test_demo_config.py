"""The demo's stages are the generic jobs with the world's files and plug-ins: every stage config
built from the shipped demo config validates and points where the stage before it wrote."""

from pathlib import Path

from rlhfv_ray.config import load_config
from rlhfv_ray.scene_world.demo import DemoConfig, stage_configs

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_demo_config_builds_every_stage_config(tmp_path):
    config = load_config(DemoConfig, str(ROOT / "configs/demo_tiny.yaml"), [f"out_dir={tmp_path}"])
    c = stage_configs(config)
    assert list(c) == ["build_model", "scene_data", "sft", "evaluate_base", "collect_feedback", "build_shards",
                       "train_ddpo", "evaluate_ddpo", "train_dpo", "evaluate_dpo"]
    data = Path(c["scene_data"].out)
    assert c["sft"].data == [str(data / "sft" / "corpus.parquet")] and c["sft"].model == c["build_model"].out
    assert c["collect_feedback"].prompts == [str(data / "prompts" / "feedback.parquet")]
    assert c["collect_feedback"].annotator == "scene-oracle"
    assert c["build_shards"].input == [str(Path(c["collect_feedback"].out) / "feedback.parquet")]
    assert (c["train_ddpo"].ddpo.gamma, c["train_dpo"].ddpo.gamma) == (config.ddpo.ddpo.gamma, 1.0)
    for name in ("ddpo", "dpo"):
        train = c[f"train_{name}"]
        assert train.rehearsal.enabled and train.rehearsal.data == [str(data / "sft" / "vqa.parquet")]
        assert c[f"evaluate_{name}"].model == train.out
    for name in ("base", "ddpo", "dpo"):
        benchmark = c[f"evaluate_{name}"].make_benchmark()
        assert benchmark.world == config.world and benchmark.scenes == config.benchmark.scenes
