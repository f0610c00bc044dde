"""SFT through the real stack: user data files (LLaVA-Instruct JSON with an image folder, parquet with
inline images) -> Ray Data validation -> Ray Train TorchTrainer -> DeepSpeed -> save_pretrained."""

import json
from pathlib import Path

import pandas as pd
import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor

from rlhfv_ray.config import RESOLVED_CONFIG_NAME
from rlhfv_ray.training.sft import SFTConfig, run_sft

pytestmark = pytest.mark.ray


def llava_instruct_json(tmp_path, parquet_corpus) -> tuple:
    """A LLaVA-Instruct JSON array of 6 good rows (images in a folder, paths relative to it) and
    one bad row of each kind; returns (json path, image folder, {reason: count})."""
    frame = pd.read_parquet(parquet_corpus).head(6)
    images = tmp_path / "images" / "scenes"
    images.mkdir(parents=True)
    rows = []
    for i, row in enumerate(frame.itertuples()):
        (images / f"{i}.png").write_bytes(row.image["bytes"])
        rows.append({"id": f"llava-{i}", "image": f"scenes/{i}.png", "conversations": list(row.conversations)})
    good = rows[0]
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    bad = {
        "missing_image": {**good, "id": "b1", "image": "scenes/absent.png"},
        "not_an_image": {**good, "id": "b2", "image": "scenes/broken.png"},
        "no_image_marker": {**good, "id": "b3", "conversations": [
            {"from": "human", "value": "What is this?"}, {"from": "gpt", "value": "A scene."}]},
        "unpaired_turns": {**good, "id": "b4", "conversations": good["conversations"][:1]},
        "bad_roles": {**good, "id": "b5", "conversations": [
            {"from": "gpt", "value": "<image>\nHi"}, {"from": "human", "value": "A scene."}]},
        "too_long": {**good, "id": "b6", "conversations": [
            good["conversations"][0], {"from": "gpt", "value": " ".join(["red"] * 900)}]},
    }
    rows += list(bad.values())
    path = tmp_path / "llava_instruct.json"
    path.write_text(json.dumps(rows))
    return path, tmp_path / "images", {reason: 1 for reason in bad}


def test_sft_reads_llava_json_and_parquet_trains_checkpoints_and_exports(ray_session, tiny_model_dir,
                                                                         tiny_scene_data, tmp_path):
    corpus = tiny_scene_data / "sft"
    llava, folder, rejects = llava_instruct_json(tmp_path, corpus / "corpus.parquet")
    config = SFTConfig.model_validate({
        "model": str(tiny_model_dir), "out": str(tmp_path / "sft"),
        # one file, one glob: the formats side by side
        "data": [str(llava), str(corpus / "corp*.parquet")], "image_folder": str(folder), "max_tokens": 400,
        "optim": {"max_steps": 4, "warmup_steps": 1, "global_batch_size": 8, "micro_batch_size": 8},
        "checkpoint": {"storage_path": str(tmp_path / "ray_results"), "every_steps": 2},
        "log_every": 1,
    })
    run_sft(config)
    out = Path(config.out)

    summary = json.loads((out / "sft_summary.json").read_text())
    assert summary["read"] == 6 + len(rejects) + 80  # 40 captions + 40 VQA conversations
    assert summary["read"] == summary["used"] + summary["rejected"]
    assert summary["rejects_by_reason"] == rejects
    rejected = pd.read_parquet(out / "sft_rejects.parquet")
    assert sorted(rejected["id"]) == [f"b{i}" for i in range(1, 7)] and all(rejected["message"].str.len() > 0)

    model = AutoModelForImageTextToText.from_pretrained(out)  # the exported model loads like LLaVA-1.5
    AutoProcessor.from_pretrained(out)
    assert model.model.vision_tower is not None
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and r["examples_per_s"] > 0 for r in records)
    assert records[-1]["loss"] < records[0]["loss"]
    assert (out / RESOLVED_CONFIG_NAME).exists()
    # the intermediate checkpoint holds the DeepSpeed state of the run
    checkpoints = list((tmp_path / "ray_results").glob("sft-*/checkpoint_*"))
    assert checkpoints and any((c / "state").is_dir() for c in checkpoints)


def test_batch_sizes_must_divide(tiny_model_dir):
    with pytest.raises(ValueError, match="multiple of"):
        SFTConfig.model_validate({"model": "m", "out": "o", "data": "d.json", "scaling": {"num_workers": 2},
                                  "optim": {"global_batch_size": 10, "micro_batch_size": 4}})
