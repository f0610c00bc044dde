"""Shared fixtures. Ray tests share one local Ray per test session, capped in size and stopped by
its own handle (never a global `ray stop`, which would end other work on the machine)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rlhfv_ray.scene_world.scene import ObjectGroup, Scene

# load generators and free ports are benchmark scaffolding the tests share
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# Ray's own usage stats and dashboards are noise in tests.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture
def street_scene() -> Scene:
    """A street scene: two red cars top left, one blue kite middle right, three yellow buses
    bottom center. Its true caption is in `street_caption`."""
    return Scene(seed=1, scene_type="street", groups=(
        ObjectGroup("car", "red", 2, 0, 0),
        ObjectGroup("kite", "blue", 1, 1, 2),
        ObjectGroup("bus", "yellow", 3, 2, 1),
    ))


@pytest.fixture
def street_caption() -> str:
    return ("A street scene. Two red cars are at the top left. One blue kite is at the middle right. "
            "Three yellow buses are at the bottom center.")


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the whole test session (2 CPUs), shut down by its own handle."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             runtime_env={"env_vars": {"DS_ACCELERATOR": "cpu"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An untrained-but-real tiny LLaVA saved with save_pretrained (pretraining cut short)."""
    from rlhfv_ray.scene_world.build_model import BuildModelConfig, build_initial_model

    out = tmp_path_factory.mktemp("tiny_llava")
    config = BuildModelConfig.model_validate(
        {"out": str(out), "vision_pretrain": {"scenes": 64, "steps": 3, "batch_size": 16},
         "language_pretrain": {"scenes": 64, "steps": 3, "batch_size": 8, "align_scenes": 64, "align_steps": 3,
                               "eval_scenes": 0}})
    build_initial_model(config, log=lambda *_: None)
    return out


@pytest.fixture(scope="session")
def family_checkpoint(tmp_path_factory):
    """family name -> a tiny random checkpoint of that family (`vlm_families.py`), built once."""
    from vlm_families import build_family

    built: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in built:
            built[name] = build_family(name, tmp_path_factory.mktemp(name))
        return built[name]

    return get


@pytest.fixture(scope="session")
def tiny_scene_data(tmp_path_factory):
    """The scene world's data files, small: SFT corpus of 40 scenes (sft/corpus.parquet,
    sft/vqa.parquet, one question each) and a prompt set of 6 feedback scenes."""
    from rlhfv_ray.scene_world.data import SceneDataConfig, write_scene_data

    out = tmp_path_factory.mktemp("scene_data")
    write_scene_data(SceneDataConfig(out=str(out), sft_scenes=40, vqa_per_scene=1, feedback_scenes=6))
    return out


@pytest.fixture(scope="session")
def tiny_shards(ray_session, tiny_model_dir, tmp_path_factory):
    """DDPO shards of 16 preference pairs, with `tiny_model_dir` as the reference model."""
    import pandas as pd
    from factories import preference_record

    from rlhfv_ray.data.pipeline import ShardConfig, build_shards

    tmp = tmp_path_factory.mktemp("ddpo_shards")
    pd.DataFrame([preference_record(i) for i in range(16)]).to_parquet(tmp / "pairs.parquet")
    build_shards(ShardConfig(input=[str(tmp / "pairs.parquet")], model=str(tiny_model_dir), out=str(tmp / "shards"),
                             rows_per_shard=8))
    return tmp / "shards"


@pytest.fixture(scope="session")
def ddpo_two_workers(tiny_shards, tiny_model_dir, tmp_path_factory):
    """One uninterrupted DDPO run of `DDPO_STEPS` steps on 2 workers, with MLflow and TensorBoard:
    (config, Ray Train result, mlruns dir). The export test reads it, and the fault test compares a
    killed run of the same config with it."""
    from factories import DDPO_STEPS, ddpo_config

    from rlhfv_ray.training.train_ddpo import run_train

    root = tmp_path_factory.mktemp("ddpo_two_workers")
    tracking = {"mlflow": True, "mlflow_tracking_uri": str(root / "mlruns"), "tensorboard": True}
    config = ddpo_config(tiny_model_dir, tiny_shards, root, "ddpo-2w", steps=DDPO_STEPS, tracking=tracking)
    return config, run_train(config), root / "mlruns"
