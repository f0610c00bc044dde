"""Feedback collection on Ray Data: the model describes fresh scenes, the oracle corrects them, and the
pairs come out in the public RLHF-V format that build-shards reads with no conversion."""

import json

import pandas as pd
import pytest

from rlhfv_ray.data.feedback import FEEDBACK_FILE, FeedbackConfig, collect_feedback
from rlhfv_ray.data.pipeline import ShardConfig, build_shards
from rlhfv_ray.data.records import RLHFV_COLUMNS
from rlhfv_ray.world.scene import sample_scene
from rlhfv_ray.world.spec import split_seed

pytestmark = pytest.mark.ray


def test_feedback_is_rlhfv_parquet_from_the_feedback_split(ray_session, tiny_model_dir, tmp_path):
    stats = collect_feedback(FeedbackConfig(model=str(tiny_model_dir), out=str(tmp_path / "fb"), scenes=6,
                                            batch_size=3, max_new_tokens=24))
    assert stats["responses"] == 6 and 0 <= stats["pairs"] <= 6
    assert set(stats["type_share"]) >= {"object", "attribute", "number", "position"}
    frame = pd.read_parquet(tmp_path / "fb" / FEEDBACK_FILE)
    assert list(frame.columns) == list(RLHFV_COLUMNS) and len(frame) == stats["pairs"]
    feedback_seeds = {split_seed("feedback", i) for i in range(6)}
    for row in frame.itertuples():
        text = json.loads(row.text)
        assert text["chosen"] != text["rejected"] and row.idx in feedback_seeds
        assert row.image["bytes"][:4] == b"\x89PNG"
        sample_scene(row.idx)  # the idx is the scene seed: the pair can be re-derived
    summary = build_shards(ShardConfig(input=[str(tmp_path / "fb" / FEEDBACK_FILE)], model=str(tiny_model_dir),
                                       out=str(tmp_path / "shards")))
    assert summary["read"] == stats["pairs"] == summary["sharded"] + summary["rejected"]
