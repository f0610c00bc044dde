"""Supervised fine-tuning of the base model on the noisy world corpus, with Ray Data + Ray Train.

Ray Data renders and tokenizes the corpus (captions + clean VQA) in parallel; Ray Train's
TorchTrainer runs DeepSpeed workers over it (the same loop as DDPO, with the SFT loss). The result
is a `save_pretrained` directory at `out`, with the resolved config, corpus statistics and
metrics beside it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from pydantic import Field

from rlhfv_ray.config import StrictModel
from rlhfv_ray.images import decode_image
from rlhfv_ray.model.encoding import encode_conversations, pad_lm_batch, pixel_values
from rlhfv_ray.model.io import load_model_and_processor, load_processor
from rlhfv_ray.training.config import RayConfig, TrainSection
from rlhfv_ray.training.logprobs import forward_token_logps
from rlhfv_ray.world.corpus import corpus_stats, iter_sft_rows
from rlhfv_ray.world.spec import WorldParams


class SFTDataConfig(StrictModel):
    scenes: int = Field(4000, gt=0)  # SFT scenes: seeds [0, scenes) of the "sft" split
    vqa_per_scene: int = Field(6, ge=0)  # questions in each scene's VQA conversation
    scenes_per_block: int = Field(250, gt=0)  # Ray Data parallelism of the rendering stage


class SFTSection(TrainSection):
    data: SFTDataConfig = SFTDataConfig()


class SFTConfig(SFTSection):
    model: str  # the initial model (a save_pretrained dir), e.g. from `rlhfv build-model`
    out: str  # where the fine-tuned save_pretrained dir is written
    world: WorldParams = WorldParams()
    ray: RayConfig = RayConfig()
    run_name: str | None = None  # Ray Train run; rerunning the same name resumes it


def sft_loss(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean NLL over all answer tokens of the batch (the usual causal-LM loss). Token averaging:
    calibration found per-example averaging starves the long captions (lower object recall)."""
    logps, mask = forward_token_logps(model, batch)
    loss = -(logps * mask).sum() / mask.sum().clamp(min=1)
    return loss, {"answer_tokens": float(mask.sum()), "input_tokens": float(batch["attention_mask"].sum())}


def make_sft_collate(processor):
    pad_id = processor.tokenizer.pad_token_id

    def collate(rows: dict) -> dict:
        images = [decode_image(b) for b in rows["image"]]
        batch = pad_lm_batch(rows["input_ids"], rows["labels"], pad_id)
        batch["pixel_values"] = pixel_values(processor, images)
        return batch

    return collate


class _Tokenize:
    """Ray Data stage: token ids and labels of each conversation (image placeholder expanded by the
    processor; every assistant answer is a target)."""

    def __init__(self, model_path: str):
        self.processor = load_processor(model_path)

    def __call__(self, batch: dict) -> dict:
        images = [decode_image(b) for b in batch["image"]]
        encoded = encode_conversations(self.processor, images, [json.loads(t) for t in batch["turns"]])
        batch["input_ids"] = [ids for ids, _ in encoded]
        batch["labels"] = [labels for _, labels in encoded]
        return batch


def build_sft_dataset(config: SFTConfig):
    import ray.data

    blocks = [(start, min(config.data.scenes_per_block, config.data.scenes - start))
              for start in range(0, config.data.scenes, config.data.scenes_per_block)]
    world, vqa = config.world, config.data.vqa_per_scene

    def render(block: dict) -> list[dict]:
        return list(iter_sft_rows(int(block["n"]), world, vqa, start=int(block["start"])))

    ds = ray.data.from_items([{"start": s, "n": n} for s, n in blocks], override_num_blocks=len(blocks))
    ds = ds.flat_map(render)
    ds = ds.map_batches(_Tokenize, fn_constructor_kwargs={"model_path": config.model},
                        batch_size=256, compute=ray.data.ActorPoolStrategy(size=1), batch_format="numpy")
    return ds.materialize()


def sft_worker(config_dict: dict) -> None:
    """Ray Train worker entry point: rebuild the typed config, build parts, run the shared loop."""
    from rlhfv_ray.training.loop import LoopParts, run_training
    from rlhfv_ray.training.trainer import METRICS_FILE

    config = SFTConfig.model_validate(config_dict)
    model, processor = load_model_and_processor(config.model)
    if config.freeze_vision_tower:
        model.model.vision_tower.requires_grad_(False)
    parts = LoopParts("sft", sft_loss, make_sft_collate(processor),
                      count_tokens=lambda batch: int(batch["attention_mask"].sum()))
    run_training(config, model, processor, parts, metrics_path=str(Path(config.out) / METRICS_FILE))


def run_sft(config: SFTConfig) -> Path:
    """Build the corpus, train on Ray Train, and write the model to `config.out`."""
    from rlhfv_ray.training.trainer import fit_and_export, start_run

    out = start_run(config, config.out)
    dataset = build_sft_dataset(config)
    stats = corpus_stats(dataset.select_columns(["task", "kind"]).iter_rows())
    (out / "corpus_stats.json").write_text(json.dumps(stats, indent=2))
    fit_and_export(sft_worker, config, {"train": dataset}, out, default_name="sft")
    return out
