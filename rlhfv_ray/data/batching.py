"""Preference pairs -> padded tensors, and the policy/reference forward over both answers.

One place builds pair batches, for the reference log-prob stage and for the DDPO trainer, so the
cached reference log-probs line up token for token with what the trainer computes.

Per-answer-token arrays (corrected masks, reference log-probs) are stored per row with one value
per answer token. In a batch they are placed on the (batch, seq - 1) grid of `token_logps`: the
answer of a row with prompt length P occupies columns P - 1 .. P - 2 + len(answer).
"""

from __future__ import annotations

from typing import Sequence

import torch

from rlhfv_ray.images import decode_image
from rlhfv_ray.model.encoding import build_lm_batch, pixel_values
from rlhfv_ray.training.ddpo import PairLogps
from rlhfv_ray.training.logprobs import token_logps


def place_answer_values(prompt_lengths: Sequence[int], values: Sequence[Sequence[float]], width: int,
                        dtype=torch.float32) -> torch.Tensor:
    """(batch, width) zeros with each row's answer values at its answer columns (see module doc)."""
    out = torch.zeros(len(values), width, dtype=dtype)
    for i, (prompt_length, row) in enumerate(zip(prompt_lengths, values)):
        out[i, prompt_length - 1: prompt_length - 1 + len(row)] = torch.as_tensor(list(row), dtype=dtype)
    return out


def _side(prompt_ids, answer_ids, pad_id: int, width: int) -> dict[str, torch.Tensor]:
    batch = build_lm_batch(prompt_ids, answer_ids, pad_id)
    extra = width - batch["input_ids"].shape[1]
    if extra:  # both sides share one width, so they can run as one forward
        batch = {k: torch.nn.functional.pad(v, (0, extra), value=pad_id if k == "input_ids" else
                                            (0 if k == "attention_mask" else -100)) for k, v in batch.items()}
    return batch


def pair_batch(rows: dict, processor) -> dict[str, torch.Tensor]:
    """Tensors of a batch of shard rows (columns as numpy arrays/lists, as Ray Data gives them)."""
    pad_id = processor.tokenizer.pad_token_id
    prompts = [list(p) for p in rows["prompt_ids"]]
    chosen, rejected = [list(a) for a in rows["chosen_ids"]], [list(a) for a in rows["rejected_ids"]]
    width = max(len(p) + max(len(c), len(r)) for p, c, r in zip(prompts, chosen, rejected))
    batch: dict[str, torch.Tensor] = {}
    for name, answers in (("chosen", chosen), ("rejected", rejected)):
        for key, value in _side(prompts, answers, pad_id, width).items():
            batch[f"{name}_{key}"] = value
        corrected = rows.get(f"{name}_corrected")
        if corrected is not None:
            batch[f"{name}_corrected"] = place_answer_values([len(p) for p in prompts], corrected, width - 1)
        reference = rows.get(f"ref_{name}_logps")
        if reference is not None:
            batch[f"ref_{name}_logps"] = place_answer_values([len(p) for p in prompts], reference, width - 1)
    batch["pixel_values"] = pixel_values(processor, [decode_image(bytes(b)) for b in rows["image"]])
    return batch


def pair_token_logps(model, batch: dict) -> tuple[PairLogps, torch.Tensor, torch.Tensor]:
    """One forward over chosen and rejected answers (stacked): per-token log-probs and masks."""
    n = batch["chosen_input_ids"].shape[0]
    outputs = model(
        input_ids=torch.cat([batch["chosen_input_ids"], batch["rejected_input_ids"]]),
        attention_mask=torch.cat([batch["chosen_attention_mask"], batch["rejected_attention_mask"]]),
        pixel_values=torch.cat([batch["pixel_values"], batch["pixel_values"]]),
        use_cache=False,
    )
    labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
    logps, mask = token_logps(outputs.logits, labels)
    return PairLogps(logps[:n], logps[n:]), mask[:n], mask[n:]


def answer_values(values: torch.Tensor, mask: torch.Tensor) -> list[list[float]]:
    """Inverse of `place_answer_values` for masked rows: one list of answer-token values per row."""
    return [row[m].tolist() for row, m in zip(values, mask)]
