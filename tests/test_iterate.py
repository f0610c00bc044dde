"""`rlhfv iterate`: rounds on fresh prompts, each from the policy the round before trained, with
humans in the loop (the job stops for corrections and resumes), and a report of every round."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rlhfv_ray.config import AwaitingHumans
from rlhfv_ray.data.feedback import AWAITING_FILE
from rlhfv_ray.data.merge import MergeConfig, merge_corrections
from rlhfv_ray.data.shards import check_shards_match_model
from rlhfv_ray.iterate import CORRECTED, IterateConfig, iterate, round_dir, write_round_prompts

pytestmark = pytest.mark.ray


def config(tmp_path, prompts, **extra) -> IterateConfig:
    return IterateConfig.model_validate({
        "base": extra.pop("base", "unused"), "prompts": str(prompts), "prompts_per_round": 3, "rounds": 2,
        "out": str(tmp_path / "iterate"),
        "feedback": {"annotator": "export", "batch_size": 3, "max_new_tokens": 16},
        "train": {"scaling": {"num_workers": 1, "cpus_per_worker": 2}, "log_every": 1,
                  "optim": {"max_steps": 2, "warmup_steps": 0, "global_batch_size": 2, "micro_batch_size": 2},
                  "checkpoint": {"storage_path": str(tmp_path / "ray_results")}},
        "benchmark_settings": {"scenes": 4, "vqa_per_scene": 1, "max_new_tokens": 16}, **extra})


def test_each_round_takes_fresh_prompts(tiny_scene_data, tmp_path):
    prompts = tiny_scene_data / "prompts" / "feedback.parquet"
    ids = []
    for k in (1, 2):
        assert write_round_prompts(config(tmp_path, prompts), k, tmp_path / f"r{k}") == 3
        ids.append(set(pd.read_parquet(tmp_path / f"r{k}" / "prompts.parquet")["idx"]))
    assert not ids[0] & ids[1]
    with pytest.raises(ValueError, match="round 3 needs prompts 6..8"):
        write_round_prompts(config(tmp_path, prompts), 3, tmp_path / "r3")


def test_rounds_stop_for_human_corrections_and_train_on_policy(ray_session, tiny_model_dir, tiny_scene_data,
                                                               tmp_path):
    settings = config(tmp_path, tiny_scene_data / "prompts" / "feedback.parquet", base=str(tiny_model_dir))
    for k in (1, 2):
        with pytest.raises(AwaitingHumans, match=f"round {k}: the answers in"):
            iterate(settings)
        # the annotators' work: each answer rewritten (what merge-corrections takes from a file)
        here = round_dir(settings, k)
        awaiting = pd.read_parquet(here / "feedback" / AWAITING_FILE)
        corrections = [{"id": json.loads(row.origin_split)["id"], "chosen": f"A street scene. Round {k}."}
                       for row in awaiting.itertuples()]
        (tmp_path / f"fixed{k}.jsonl").write_text("".join(json.dumps(c) + "\n" for c in corrections))
        merge_corrections(MergeConfig(answers=[str(here / "feedback" / AWAITING_FILE)],
                                      corrections=[str(tmp_path / f"fixed{k}.jsonl")], out=str(here / CORRECTED)))
    report = iterate(settings)

    # round 2 answered with, and took as its reference, the model round 1 trained
    check_shards_match_model(str(round_dir(settings, 1) / "shards"), str(tiny_model_dir))
    check_shards_match_model(str(round_dir(settings, 2) / "shards"), str(round_dir(settings, 1) / "model"))
    assert report["pairs_per_round"] == {"round 1": 3, "round 2": 3}
    assert set(report["paired"]) == {"round 1 - base", "round 2 - round 1", "round 2 - base"}
    assert list(report["results"]) == ["base", "round 1", "round 2"]
    out = tmp_path / "iterate"
    assert (out / "report.md").read_text().count("|") > 10 and (out / "report.png").stat().st_size > 0
    marker = round_dir(settings, 2) / "model" / "stage_done.json"
    trained = marker.read_text()
    assert json.loads(json.dumps(iterate(settings))) == json.loads((out / "report.json").read_text())
    assert marker.read_text() == trained  # the rerun reused every stage
