"""SFT through the real stack: Ray Data corpus -> Ray Train TorchTrainer -> DeepSpeed -> save_pretrained."""

import json

import pytest
from transformers import AutoModelForImageTextToText, AutoProcessor

from rlhfv_ray.config import RESOLVED_CONFIG_NAME
from rlhfv_ray.training.sft import SFTConfig, run_sft

pytestmark = pytest.mark.ray


def test_sft_job_trains_checkpoints_and_exports(ray_session, tiny_model_dir, tmp_path):
    config = SFTConfig.model_validate({
        "model": str(tiny_model_dir), "out": str(tmp_path / "sft"),
        "data": {"scenes": 40, "vqa_per_scene": 1, "scenes_per_block": 20},
        "optim": {"max_steps": 4, "warmup_steps": 1, "global_batch_size": 8, "micro_batch_size": 8},
        "checkpoint": {"storage_path": str(tmp_path / "ray_results"), "every_steps": 2},
        "log_every": 1,
    })
    out = run_sft(config)

    model = AutoModelForImageTextToText.from_pretrained(out)  # the exported model loads like LLaVA-1.5
    AutoProcessor.from_pretrained(out)
    assert model.model.vision_tower is not None
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(r["loss"] > 0 and r["examples_per_s"] > 0 for r in records)
    assert records[-1]["loss"] < records[0]["loss"]
    assert (out / RESOLVED_CONFIG_NAME).exists()
    stats = json.loads((out / "corpus_stats.json").read_text())
    assert stats["captions"] == 40 and stats["vqa_conversations"] == 40
    # the intermediate checkpoint holds the DeepSpeed state of the run
    checkpoints = list((tmp_path / "ray_results").glob("sft-*/checkpoint_*"))
    assert checkpoints and any((c / "state").is_dir() for c in checkpoints)


def test_batch_sizes_must_divide(tiny_model_dir):
    with pytest.raises(ValueError, match="multiple of"):
        SFTConfig.model_validate({"model": "m", "out": "o", "scaling": {"num_workers": 2},
                                  "optim": {"global_batch_size": 10, "micro_batch_size": 4}})
