"""Several sampled answers per prompt (`feedback.samples`): distinct answers, ids that say which
prompt they answer, the same answers on a rerun, each corrected by the annotator."""

import json

import pandas as pd
import pytest

from rlhfv_ray.data.feedback import FeedbackSection, GenerateAndAnnotate, PreparePrompts


def prompt_batch(tiny_scene_data, n: int) -> pd.DataFrame:
    raw = pd.read_parquet(tiny_scene_data / "prompts" / "feedback.parquet").head(n)
    return PreparePrompts(None, 10**8)(raw).drop(columns=["status", "message"])


def test_sampled_answers_are_distinct_reproducible_and_corrected(tiny_model_dir, tiny_scene_data):
    section = FeedbackSection(annotator="scene-oracle", samples=3, temperature=1.5, max_new_tokens=16)
    batch = prompt_batch(tiny_scene_data, 4)
    actor = GenerateAndAnnotate(str(tiny_model_dir), section)
    first, again = actor(batch), actor(batch)
    pd.testing.assert_frame_equal(first, again)  # seeded by the prompts, not by the actor's history
    assert len(batch) < len(first) <= 3 * len(batch)
    for prompt in batch.itertuples():
        mine = first[first["id"].str.startswith(f"{prompt.id}/")]
        assert 1 <= len(mine) <= 3 and mine["answer"].is_unique
        assert list(mine["id"]) == [f"{prompt.id}/{k}" for k in range(len(mine))]
        assert (mine["question"] == prompt.question).all() and (mine["image"] == prompt.image).all()
    assert first["idx"].is_unique and not set(first["idx"]) & set(batch["idx"])
    assert set(first["status"]) <= {"pair", "correct"}
    for row in first.itertuples():
        assert (row.status == "pair") == (row.chosen != row.answer) and isinstance(json.loads(row.types), list)


def test_one_greedy_answer_keeps_the_prompts_id(tiny_model_dir, tiny_scene_data):
    batch = prompt_batch(tiny_scene_data, 2)
    out = GenerateAndAnnotate(str(tiny_model_dir), FeedbackSection(annotator="scene-oracle", max_new_tokens=8))(batch)
    assert list(out["id"]) == list(batch["id"]) and list(out["idx"]) == list(batch["idx"])


def test_several_samples_need_a_temperature():
    with pytest.raises(ValueError, match="needs a temperature"):
        FeedbackSection(annotator="scene-oracle", samples=2)
