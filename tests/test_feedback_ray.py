"""Feedback collection on Ray Data: a model answers a prompt set, an annotator corrects the answers,
and the pairs come out in the public RLHF-V format that build-shards reads with no conversion."""

import json

import pandas as pd
import pytest

from rlhfv_ray.data.feedback import AWAITING_FILE, FEEDBACK_FILE, PROMPT_REJECTS, FeedbackConfig, collect_feedback
from rlhfv_ray.data.merge import STILL_AWAITING, MergeConfig, merge_corrections
from rlhfv_ray.data.pipeline import ShardConfig, build_shards
from rlhfv_ray.data.records import RLHFV_COLUMNS
from rlhfv_ray.scene_world.spec import split_seed

pytestmark = pytest.mark.ray


def test_the_scene_oracle_corrects_the_world_prompt_set(ray_session, tiny_model_dir, tiny_scene_data, tmp_path):
    prompts = tiny_scene_data / "prompts" / "feedback.parquet"
    stats = collect_feedback(FeedbackConfig(model=str(tiny_model_dir), prompts=str(prompts), out=str(tmp_path / "fb"),
                                            annotator="scene-oracle", batch_size=3, max_new_tokens=24))
    assert stats["prompts"] == {"read": 6, "used": 6, "rejected": 0, "rejects_by_reason": {}}
    assert stats["responses"] == 6 == stats["pairs"] + stats["correct"] and stats["awaiting"] == 0
    frame = pd.read_parquet(tmp_path / "fb" / FEEDBACK_FILE)
    assert list(frame.columns) == list(RLHFV_COLUMNS) and len(frame) == stats["pairs"]
    feedback_seeds = {split_seed("feedback", i) for i in range(6)}
    for row in frame.itertuples():
        text = json.loads(row.text)
        assert text["chosen"] != text["rejected"] and row.idx in feedback_seeds
        assert row.image["bytes"][:4] == b"\x89PNG"
    summary = build_shards(ShardConfig(input=str(tmp_path / "fb" / FEEDBACK_FILE), model=str(tiny_model_dir),
                                       out=str(tmp_path / "shards")))
    assert summary["read"] == stats["pairs"] == summary["sharded"] + summary["rejected"]


def test_exported_answers_and_merged_corrections_lose_nothing(ray_session, tiny_model_dir, tiny_scene_data, tmp_path):
    """LLaVA-style prompts with a bad row, exported for humans; corrections for some answers, one
    marking an answer correct, one for an id that does not exist."""
    prompts = pd.read_parquet(tiny_scene_data / "prompts" / "feedback.parquet").head(4)
    lines = []
    for i, row in enumerate(prompts.itertuples()):  # images beside the file, paths relative to it
        (tmp_path / f"p{i}.png").write_bytes(row.image["bytes"])
        lines.append({"id": f"p{i}", "image": f"p{i}.png", "conversations": [
            {"from": "human", "value": "<image>\nDescribe the image in detail."}]})
    lines.append({"id": "bad", "image": "p0.png", "conversations": []})
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    stats = collect_feedback(FeedbackConfig(model=str(tiny_model_dir), prompts=str(tmp_path / "prompts.jsonl"),
                                            out=str(tmp_path / "fb"), batch_size=2, max_new_tokens=8))
    assert stats["prompts"]["read"] == 5 and stats["prompts"]["rejects_by_reason"] == {"missing_turns": 1}
    assert stats["awaiting"] == 4 and stats["pairs"] == 0
    assert len(pd.read_parquet(tmp_path / "fb" / PROMPT_REJECTS)) == 1
    awaiting = pd.read_parquet(tmp_path / "fb" / AWAITING_FILE)
    answers = {json.loads(r.origin_split)["id"]: json.loads(r.text)["rejected"] for r in awaiting.itertuples()}
    assert sorted(answers) == ["p0", "p1", "p2", "p3"]
    corrections = [{"id": "p0", "chosen": "A street scene."}, {"id": "p1", "chosen": answers["p1"]},
                   {"id": "nope", "chosen": "x"}]
    (tmp_path / "corrections.jsonl").write_text("".join(json.dumps(c) + "\n" for c in corrections) + "{oops\n")
    merged = merge_corrections(MergeConfig(answers=str(tmp_path / "fb" / AWAITING_FILE),
                                           corrections=str(tmp_path / "corrections.jsonl"), out=str(tmp_path / "merged")))
    assert merged == {"answers": 4, "pairs": 1 if answers["p0"] != "A street scene." else 0,
                      "correct": 2 if answers["p0"] == "A street scene." else 1, "still_awaiting": 2,
                      "unmatched_corrections": 1, "malformed_corrections": 1}
    assert len(pd.read_parquet(tmp_path / "merged" / STILL_AWAITING)) == 2
    listed = [json.loads(line) for line in (tmp_path / "merged" / "unmatched_corrections.jsonl").read_text().splitlines()]
    assert [u["reason"] for u in listed] == ["no_such_answer", "malformed_json_line"]
    pairs = pd.read_parquet(tmp_path / "merged" / FEEDBACK_FILE)
    assert [json.loads(t)["chosen"] for t in pairs["text"]] == ["A street scene."][:merged["pairs"]]
