"""Per-token log-probabilities of answer tokens (pure): the quantity SFT, the reference stage and
DDPO all build on, computed one way so the cached reference log-probs equal the trainer's own."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from rlhfv_ray.model.encoding import IGNORE_INDEX
from rlhfv_ray.model.families import to_model


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(label_t | tokens < t) for every position whose label is set.

    logits: (batch, seq, vocab) from a causal LM over input_ids; labels: (batch, seq) with
    IGNORE_INDEX outside the answer. Returns (logps, mask), both (batch, seq - 1), aligned with
    labels[:, 1:]; logps is 0 where mask is False.
    """
    return label_logps(logits[:, :-1], labels[:, 1:])


def label_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(labels[:, t]) under logits[:, t] (already aligned: no shift), IGNORE_INDEX masked out;
    (logps, mask), logps 0 where mask is False."""
    mask = labels != IGNORE_INDEX
    safe_labels = labels.masked_fill(~mask, 0)
    # cross_entropy = -log_softmax gathered at the label, without materialising log_softmax twice
    logps = -F.cross_entropy(logits.float().transpose(1, 2), safe_labels, reduction="none")
    return logps * mask, mask


def forward_token_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Run `model` (HF image-text-to-text, or a DeepSpeed engine around one) on every input of
    `batch` (`inputs.lm_batch`) and return the answer tokens' (logps, mask) as `token_logps` does."""
    outputs = model(**to_model({k: v for k, v in batch.items() if k != "labels"}, model), use_cache=False)
    return token_logps(outputs.logits, batch["labels"])


def sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-example mean over masked positions: (batch, seq) -> (batch,)."""
    return (values * mask).sum(-1) / mask.sum(-1).clamp(min=1)


@dataclass(frozen=True)
class PairLogps:
    """Per-token log-probs (batch, seq) of the chosen and rejected answers, on one grid."""

    chosen: torch.Tensor
    rejected: torch.Tensor
