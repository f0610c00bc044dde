"""The demo's stages are the generic jobs with the world's files and plug-ins: every stage config
built from the shipped demo config validates and points where the stage before it wrote; the
shipped SFT base is the one its recipe (the demo config's sections) describes."""

from pathlib import Path

import pytest
import yaml

from rlhfv_ray.config import load_config
from rlhfv_ray.scene_world.demo import RECIPE_FILE, SHIPPED_BASE, DemoConfig, recipe, stage_configs
from rlhfv_ray.stages import Progress

ROOT = Path(__file__).resolve().parents[1]


def demo_config(tmp_path, *overrides):
    return load_config(DemoConfig, str(ROOT / "configs/demo_tiny.yaml"), [f"out_dir={tmp_path}", *overrides])


def test_the_demo_starts_from_the_shipped_base(tmp_path):
    config = demo_config(tmp_path)
    c = stage_configs(config)
    assert list(c) == ["scene_data", "evaluate_base", "collect_feedback", "build_shards", "train_ddpo",
                       "evaluate_ddpo"]
    data = Path(c["scene_data"].out)
    base = str(SHIPPED_BASE)
    assert c["evaluate_base"].model == c["collect_feedback"].model == c["build_shards"].model == base
    assert c["train_ddpo"].model == base
    assert c["collect_feedback"].prompts == [str(data / "prompts" / "feedback.parquet")]
    assert c["collect_feedback"].annotator == "scene-oracle"
    assert c["build_shards"].input == [str(Path(c["collect_feedback"].out) / "feedback.parquet")]
    train = c["train_ddpo"]
    assert train.ddpo.gamma == config.ddpo.ddpo.gamma and train.shards == c["build_shards"].out
    assert train.rehearsal.enabled and train.rehearsal.data == [str(data / "sft" / "vqa.parquet")]
    assert c["evaluate_ddpo"].model == train.out


def test_rebuild_and_dpo_add_their_stages(tmp_path):
    config = demo_config(tmp_path, "base=rebuild", "dpo=true")
    c = stage_configs(config)
    assert list(c) == ["scene_data", "build_model", "sft", "evaluate_base", "collect_feedback", "build_shards",
                       "train_ddpo", "evaluate_ddpo", "train_dpo", "evaluate_dpo"]
    data = Path(c["scene_data"].out)
    assert c["sft"].data == [str(data / "sft" / "corpus.parquet")] and c["sft"].model == c["build_model"].out
    assert c["collect_feedback"].model == c["train_ddpo"].model == c["train_dpo"].model == c["sft"].out
    assert (c["train_ddpo"].ddpo.gamma, c["train_dpo"].ddpo.gamma) == (config.ddpo.ddpo.gamma, 1.0)
    for name in ("base", "ddpo", "dpo"):
        benchmark = c[f"evaluate_{name}"].make_benchmark()
        assert benchmark.world == config.world and benchmark.scenes == config.benchmark.scenes


def test_the_shipped_base_is_what_its_recipe_and_the_demo_config_say(tmp_path):
    recorded = yaml.safe_load((SHIPPED_BASE / RECIPE_FILE).read_text())
    assert recorded == recipe(demo_config(tmp_path))
    import json

    config = json.loads((SHIPPED_BASE / "config.json").read_text())
    spec = recorded["model"]["spec"]
    assert config["text_config"]["hidden_size"] == spec["text_hidden"]
    assert config["vision_config"]["num_hidden_layers"] == spec["vision_layers"]
    # small enough to ship in the repository
    assert (SHIPPED_BASE / "model.safetensors").stat().st_size < 8 * 2**20


def test_progress_scales_the_estimate_by_the_stages_done(monkeypatch):
    clock = iter([0.0, 30.0])  # at the start, at the line
    monkeypatch.setattr("rlhfv_ray.stages.time.perf_counter", lambda: next(clock))
    progress = Progress({"a": 10, "b": 20, "c": 30})
    assert progress.remaining_seconds() == 60
    progress.finish("a", 0.0)  # reused: says nothing of this machine's speed
    assert progress.remaining_seconds() == 50
    progress.finish("b", 40.0)  # twice the typical time: what is left takes twice as long
    assert progress.remaining_seconds() == pytest.approx(60)
    assert progress.line("c") == "[3/3 c] elapsed 0m30s, about 1m00s left"
