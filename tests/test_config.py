"""Typed configs: YAML + dotted overrides, unknown keys rejected by name, resolved config saved."""

import pytest
import yaml

from rlhfv_ray.config import ConfigError, StrictModel, load_config, parse_override, save_resolved_config
from rlhfv_ray.scene_world.spec import WorldParams


class Inner(StrictModel):
    lr: float = 1e-3
    steps: int = 10


class Outer(StrictModel):
    name: str = "x"
    train: Inner = Inner()
    world: WorldParams = WorldParams()


def test_override_values_are_parsed_as_yaml():
    assert parse_override("train.lr=1e-4") == (["train", "lr"], 1e-4)
    assert parse_override("flag=true") == (["flag"], True)
    assert parse_override("xs=[1, 2]") == (["xs"], [1, 2])
    assert parse_override("name=hello world") == (["name"], "hello world")


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"name": "a", "train": {"lr": 0.5}}))
    config = load_config(Outer, path, ["train.steps=7", "world.noise.object=0.2"])
    assert (config.name, config.train.lr, config.train.steps) == ("a", 0.5, 7)
    assert config.world.noise.object == 0.2


@pytest.mark.parametrize("override, key", [
    ("train.lrr=1", "train.lrr"),
    ("trian.lr=1", "trian"),
    ("world.noise.objekt=0.1", "world.noise.objekt"),
])
def test_unknown_keys_are_rejected_by_name(override, key):
    with pytest.raises(ConfigError, match=f"unknown config key '{key}'"):
        load_config(Outer, None, [override])


def test_unknown_key_in_yaml_is_rejected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1\n  momentum: 0.9\n")
    with pytest.raises(ConfigError, match="unknown config key 'train.momentum'"):
        load_config(Outer, path)


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="'train.steps'"):
        load_config(Outer, None, ["train.steps=many"])


def test_invalid_world_values_are_rejected():
    with pytest.raises(ConfigError, match="probability"):
        load_config(Outer, None, ["world.noise.attribute=1.5"])


def test_malformed_override_is_an_error():
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(Outer, None, ["train.lr"])


def test_resolved_config_round_trips(tmp_path):
    config = load_config(Outer, None, ["train.lr=0.25"])
    path = save_resolved_config(config, tmp_path)
    assert load_config(Outer, path) == config


def test_workers_get_absolute_local_paths_and_untouched_hub_ids(tmp_path, monkeypatch):
    """Ray Train workers run in their own working directory: relative local paths would miss."""
    from rlhfv_ray.training.train_ddpo import DDPOConfig
    from rlhfv_ray.training.trainer import worker_config

    monkeypatch.chdir(tmp_path)
    (tmp_path / "base").mkdir()
    local = worker_config(DDPOConfig(model="base", shards="s3://bucket/shards", out="runs/ddpo"))
    assert local["model"] == str(tmp_path / "base")
    assert local["shards"] == "s3://bucket/shards"
    assert local["out"] == str(tmp_path / "runs" / "ddpo")
    hub = worker_config(DDPOConfig(model="llava-hf/llava-1.5-7b-hf", shards="shards", out="/abs/out"))
    assert hub["model"] == "llava-hf/llava-1.5-7b-hf" and hub["shards"] == "shards" and hub["out"] == "/abs/out"


def test_partial_ddpo_optim_overrides_keep_the_ddpo_defaults():
    from rlhfv_ray.training.train_ddpo import DDPO_OPTIM, DDPOSection

    optim = DDPOSection.model_validate({"optim": {"lr": 2e-5}}).optim
    assert optim.lr == 2e-5
    assert optim.model_dump(exclude={"lr"}) == DDPO_OPTIM.model_dump(exclude={"lr"})


def test_path_options_take_a_single_path_a_glob_or_a_list():
    from rlhfv_ray.data.pipeline import ShardConfig

    for given, expected in (("data.parquet", ["data.parquet"]), ("in/*.parquet", ["in/*.parquet"]),
                            ("[a.parquet, b.jsonl]", ["a.parquet", "b.jsonl"])):
        config = load_config(ShardConfig, None, [f"input={given}", "model=m", "out=o"])
        assert config.input == expected


def test_the_command_line_takes_one_input_path_and_help_lists_defaults(tmp_path, capsys):
    from rlhfv_ray.cli import main

    # a missing input is the pipeline's error, not the config's "must be a list"
    assert main(["build-shards", "--config", "none", "--input", str(tmp_path / "absent.parquet"),
                 "--model", "m", "--out", str(tmp_path / "o"), "ray.num_cpus=1"]) == 2
    assert "absent.parquet" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sft", "--help"])
    text = capsys.readouterr().out
    assert "--data" in text and "optim.lr: float = 0.001" in text and "max_tokens: int = 1024" in text
    assert "model: str (required)" in text


def test_forget_run_removes_only_that_run(tmp_path):
    from rlhfv_ray.training.trainer import forget_run

    for name in ("ddpo-aaaa", "ddpo-bbbb"):
        (tmp_path / name / "checkpoint_1").mkdir(parents=True)
        (tmp_path / name / "checkpoint_1" / "state.pt").write_bytes(b"x")
    forget_run(str(tmp_path), "ddpo-aaaa")
    forget_run(str(tmp_path), "ddpo-never-ran")  # nothing to remove: no error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ddpo-bbbb"]
