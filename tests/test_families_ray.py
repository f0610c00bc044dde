"""Other families through the real stack: build-shards on Ray Data, DDPO on Ray Train (2 workers,
DeepSpeed, gloo) with full fine-tuning, ZeRO-3, gradient checkpointing and LoRA, SFT, and serving
the result. The pure forward tests (`test_families.py`) cover all ten families; these take the ones
whose inputs differ most from LLaVA-1.5's: Qwen2-VL (3-D rotary positions; LoRA with ZeRO-2 and
with ZeRO-3, served), Gemma 3 (token types, a template that writes bos; ZeRO-3 partitioning it at
load, and gradient checkpointing under the shared-prompt forward), Qwen3-VL (SFT) and Qwen2.5-VL
(feedback and evaluation). Each Ray Train run costs about a minute of `make test`, so
one run carries several features."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from rlhfv_ray.data.pipeline import ShardConfig, build_shards
from rlhfv_ray.data.shards import shard_files
from rlhfv_ray.model.io import load_model, load_processor
from rlhfv_ray.model.pair_forward import answer_values, pair_batch, pair_token_logps
from rlhfv_ray.training.train_ddpo import DDPOConfig, run_train

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RUNS = {  # family[-variant] -> what its two DDPO steps also exercise
    "qwen2_vl": {"lora": {"r": 4, "alpha": 8, "merge": True}},
    # ZeRO-3 partitions the frozen base too: LoRA's smallest per-worker memory in fp32
    "qwen2_vl-zero3": {"lora": {"r": 4, "alpha": 8, "merge": True}, "deepspeed": {"zero_stage": 3}},
    "gemma3": {"deepspeed": {"zero_stage": 3}, "gradient_checkpointing": True},
}


def _shards(name, model, tmp_path) -> tuple:
    from factories import preference_record

    pd.DataFrame([preference_record(i) for i in range(8)]).to_parquet(tmp_path / "pairs.parquet")
    summary = build_shards(ShardConfig(input=str(tmp_path / "pairs.parquet"), model=str(model),
                                       out=str(tmp_path / "shards"), rows_per_shard=4))
    return tmp_path / "shards", summary


@pytest.mark.parametrize("name", sorted(RUNS))
def test_shards_and_two_ddpo_steps(name, ray_session, family_checkpoint, tmp_path):
    model_dir = family_checkpoint(name.split("-")[0])
    shards, summary = _shards(name, model_dir, tmp_path)
    assert summary["sharded"] == 8 and summary["rejected"] == 0

    # the cached reference log-probs are the model's own on the shard rows
    frame = pd.concat([pd.read_parquet(f) for f in shard_files(shards)])
    rows = {c: list(frame[c]) for c in frame.columns}
    model, processor = load_model(model_dir).eval(), load_processor(model_dir)
    with torch.no_grad():
        logps, chosen_mask, _ = pair_token_logps(model, pair_batch(rows, processor))
    for got, cached in zip(answer_values(logps.chosen, chosen_mask), rows["ref_chosen_logps"]):
        assert got == pytest.approx(list(cached), abs=1e-4)

    config = DDPOConfig.model_validate({
        "model": str(model_dir), "shards": str(shards), "out": str(tmp_path / "ddpo"), "run_name": f"ddpo-{name}",
        "scaling": {"num_workers": 2, "cpus_per_worker": 1},
        "optim": {"lr": 1e-3, "warmup_steps": 0, "max_steps": 2, "global_batch_size": 4, "micro_batch_size": 2},
        "checkpoint": {"storage_path": str(tmp_path / "ray_results")}, "log_every": 1, **RUNS[name]})
    run_train(config)
    out = Path(config.out)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["loss"] == pytest.approx(0.6931, abs=2e-3)  # the policy starts at the reference
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in records)
    trained = load_model(out).eval()  # a full model, or for LoRA the adapter on its base
    with torch.no_grad():
        moved = pair_token_logps(trained, pair_batch(rows, load_processor(out)))[0].chosen
    assert not torch.allclose(moved, logps.chosen)
    if "lora" in RUNS[name]:
        assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
        merged = load_model(out / "merged").eval()
        with torch.no_grad():
            assert torch.allclose(pair_token_logps(merged, pair_batch(rows, processor))[0].chosen, moved, atol=1e-5)
        _serves(out)


def _serves(model_dir) -> None:
    """The serving engine answers a request from `model_dir` (an adapter: loaded on its base)."""
    from rlhfv_ray.model.generate import GenerationSettings
    from serve_app.engine import Engine, GenerationJob

    frame = pd.read_parquet(shard_files(model_dir.parent / "shards")[0]).head(1)
    message = {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": frame["question"][0]}]}
    job = GenerationJob((bytes(frame["image"][0]),), (message,), GenerationSettings(max_new_tokens=4))
    final = [s[0] for s in Engine(str(model_dir), device="cpu").run([job]) if s[0] is not None][-1]
    assert final.error is None and final.final.completion_tokens <= 4


def test_feedback_and_evaluation_of_another_family(ray_session, family_checkpoint, tiny_scene_data, tmp_path):
    """collect-feedback (generation on a Ray Data actor pool, answers exported for correction) and
    evaluate (the coco benchmark on the scene world's COCO export) on a Qwen2.5-VL checkpoint."""
    from rlhfv_ray.data.feedback import AWAITING_FILE, FeedbackConfig, collect_feedback
    from rlhfv_ray.eval.benchmark import EvaluateConfig, evaluate_checkpoint
    from rlhfv_ray.scene_world.coco_export import IMAGES, INSTANCES, export_coco
    from rlhfv_ray.scene_world.scene import sample_scene

    model_dir = family_checkpoint("qwen2_5_vl")
    prompts = tiny_scene_data / "prompts" / "feedback.parquet"
    stats = collect_feedback(FeedbackConfig(model=str(model_dir), prompts=str(prompts), out=str(tmp_path / "fb"),
                                            batch_size=3, max_new_tokens=8))
    assert stats["prompts"]["used"] == 6 == stats["responses"] == stats["awaiting"]
    assert len(pd.read_parquet(tmp_path / "fb" / AWAITING_FILE)) == 6

    coco = export_coco([sample_scene(i) for i in range(3)], 96, tmp_path / "coco")
    metrics = evaluate_checkpoint(EvaluateConfig(
        model=str(model_dir), out=str(tmp_path / "eval.json"), benchmark="coco",
        settings={"annotations": str(coco / INSTANCES), "images": str(coco / IMAGES), "max_new_tokens": 8}))
    assert metrics["benchmark"] == "coco" and (tmp_path / "eval.json").exists()


def test_sft_of_another_family(ray_session, family_checkpoint, tiny_scene_data, tmp_path):
    """`rlhfv sft` on a Qwen3-VL checkpoint: multi-turn conversations through its chat template."""
    from rlhfv_ray.training.sft import SFTConfig, run_sft

    run_sft(SFTConfig.model_validate({
        "model": str(family_checkpoint("qwen3_vl")), "out": str(tmp_path / "sft"),
        "data": str(tiny_scene_data / "sft" / "corpus.parquet"), "run_name": "sft-qwen3_vl",
        "scaling": {"num_workers": 2, "cpus_per_worker": 1},
        "optim": {"max_steps": 2, "warmup_steps": 0, "global_batch_size": 4, "micro_batch_size": 2},
        "checkpoint": {"storage_path": str(tmp_path / "ray_results")}, "log_every": 1}))
    out = tmp_path / "sft"
    summary = json.loads((out / "sft_summary.json").read_text())
    assert summary["read"] == summary["used"] > 0 and summary["rejected"] == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2] and all(r["loss"] > 0 for r in records)
    load_model(out)
