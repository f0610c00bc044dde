"""`rlhfv sft --data PATH`: supervised fine-tuning on image + conversation data, with Ray Data + Ray Train.

Ray Data reads, validates and tokenizes the conversations (`data/conversations.py`: LLaVA-Instruct
JSON or parquet with inline images; bad rows to `sft_rejects.parquet` with a reason); Ray Train's
TorchTrainer runs DeepSpeed workers over them (the same loop as DDPO, with the SFT loss). The result
is a `save_pretrained` directory at `out`, with the resolved config, the data summary (read = used +
rejected) and metrics beside it.
"""

from __future__ import annotations


import numpy as np
import torch

from rlhfv_ray.data.conversations import ConversationData, prepare_conversations
from rlhfv_ray.data.sources import expand_paths
from rlhfv_ray.images import decode_image
from rlhfv_ray.model.inputs import lm_batch
from rlhfv_ray.ray_runtime import RayConfig
from rlhfv_ray.training.config import TrainSection
from rlhfv_ray.model.logprobs import forward_token_logps


class SFTSection(TrainSection):
    """What SFT trains with, apart from the data and the paths."""


class SFTConfig(SFTSection, ConversationData):
    model: str  # the initial model: a save_pretrained dir (e.g. from `rlhfv build-model`) or a hub id
    out: str  # where the fine-tuned save_pretrained dir is written
    ray: RayConfig = RayConfig()
    run_name: str | None = None  # Ray Train run; rerunning the same name resumes it


def sft_loss(model, batch: dict) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean NLL over all answer tokens of the batch (the usual causal-LM loss). Token averaging:
    calibration found per-example averaging starves the long captions (lower object recall)."""
    logps, mask = forward_token_logps(model, batch)
    loss = -(logps * mask).sum() / mask.sum().clamp(min=1)
    return loss, {"answer_tokens": float(mask.sum()), "input_tokens": float(batch["attention_mask"].sum())}


def make_sft_collate(processor):
    def collate(rows: dict) -> dict:
        return lm_batch(processor, [decode_image(b) for b in rows["image"]], [str(q) for q in rows["question"]],
                        [list(x) for x in rows["input_ids"]], [list(x) for x in rows["labels"]])

    return collate


def sft_worker(config_dict: dict) -> None:
    """Ray Train worker entry point: rebuild the typed config, build parts, run the shared loop."""
    from rlhfv_ray.training.loop import LoopParts, run_training
    from rlhfv_ray.training.policy import load_policy

    config = SFTConfig.model_validate(config_dict)
    model, processor = load_policy(config, config.model)
    parts = LoopParts("sft", sft_loss, make_sft_collate(processor),
                      row_lengths=lambda rows: np.array([len(ids) for ids in rows["input_ids"]]),
                      count_tokens=lambda batch: int(batch["attention_mask"].sum()))
    run_training(config, model, processor, parts, out=config.out)


def run_sft(config: SFTConfig, fresh: bool = False):
    """Read and check the data, train on Ray Train, and write the model to `config.out`. Returns
    Ray Train's Result (its `metrics_dataframe`: the logged records). `fresh`: start over rather
    than resume an earlier run of the same config."""
    from rlhfv_ray.training.trainer import fit_and_export, start_run

    expand_paths(config.data)  # a missing input is said before Ray starts
    out = start_run(config, config.out)
    dataset, _ = prepare_conversations(config.conversation_data(), config.model, out, "sft")
    return fit_and_export(sft_worker, config, {"train": dataset}, out, default_name="sft", fresh=fresh)
