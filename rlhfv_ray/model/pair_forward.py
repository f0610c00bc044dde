"""Preference pairs -> padded tensors, and the policy/reference forward over both answers.

One place builds pair batches, for the reference log-prob stage and for the DDPO trainer, so the
cached reference log-probs line up token for token with what the trainer computes.

Chosen and rejected answers share their prompt (image tokens included), so the forward runs the
prompt once and both answers on its key/value cache: the vision tower and the prompt tokens are
computed once per pair instead of twice (for LLaVA-1.5, 576 image tokens against answers of about
100, most of the work). `pair_token_logps_unshared` is the plain forward over two full sequences,
kept as the definition the shared one is tested against.

Per-answer-token arrays (corrected masks, reference log-probs) are stored per row with one value
per answer token. In a batch they are placed on the (batch, seq - 1) grid of `token_logps`: the
answer of a row with prompt length P occupies columns P - 1 .. P - 2 + len(answer).
"""

from __future__ import annotations

from typing import Sequence

import torch

from rlhfv_ray.images import decode_image
from rlhfv_ray.model.encoding import IGNORE_INDEX, build_lm_batch, pad_right, pixel_values
from rlhfv_ray.model.logprobs import PairLogps, label_logps, token_logps


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
    batch.update(_shared_prefix_inputs(prompts, chosen, rejected, pad_id))
    batch["pixel_values"] = pixel_values(processor, [decode_image(bytes(b)) for b in rows["image"]])
    return batch


def _shared_prefix_inputs(prompts, chosen, rejected, pad_id: int) -> dict[str, torch.Tensor]:
    """Prompts left-padded (every prompt ends in the last column, whose logits predict the first
    answer token), answers right-padded and interleaved (chosen 0, rejected 0, chosen 1, ...) to
    match the prompt cache repeated row by row."""
    width = max(len(p) for p in prompts)
    prompt_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        prompt_ids[i, width - len(p):] = torch.as_tensor(p, dtype=torch.long)
        prompt_mask[i, width - len(p):] = 1
    answers = [a for pair in zip(chosen, rejected) for a in pair]
    return {"prompt_input_ids": prompt_ids, "prompt_attention_mask": prompt_mask,
            "answer_input_ids": pad_right(answers, pad_id),
            "answer_attention_mask": pad_right([[1] * len(a) for a in answers], 0)}


def pair_token_logps(model, batch: dict) -> tuple[PairLogps, torch.Tensor, torch.Tensor]:
    """Per-token log-probs and masks of chosen and rejected answers, on the (batch, seq - 1) grid of
    `token_logps` over the full sequences, from one prompt forward shared by both answers."""
    prompt_mask = batch["prompt_attention_mask"]
    prefix = model(input_ids=batch["prompt_input_ids"], attention_mask=prompt_mask,
                   position_ids=(prompt_mask.cumsum(-1) - 1).clamp(min=0),
                   pixel_values=batch["pixel_values"], use_cache=True, logits_to_keep=1)
    cache = prefix.past_key_values
    cache.batch_repeat_interleave(2)
    answers, answer_mask = batch["answer_input_ids"], batch["answer_attention_mask"]
    prompt_lengths = prompt_mask.sum(-1).repeat_interleave(2)
    outputs = model(input_ids=answers,
                    attention_mask=torch.cat([prompt_mask.repeat_interleave(2, dim=0), answer_mask], dim=1),
                    position_ids=prompt_lengths[:, None] + torch.arange(answers.shape[1], device=answers.device),
                    past_key_values=cache, use_cache=True)
    # answer token k is predicted by the prompt's last position (k = 0) or answer position k - 1
    logits = torch.cat([prefix.logits[:, -1:].repeat_interleave(2, dim=0), outputs.logits[:, :-1]], dim=1)
    logps, mask = label_logps(logits, answers.masked_fill(answer_mask == 0, IGNORE_INDEX))
    # onto the full-sequence grid: a row with prompt length P has answer token k in column P - 1 + k.
    # The scatter grid (longest prompt + longest answer - 1 columns) is never narrower than the
    # grid's width; the columns past it hold only padding (masked) and are cut.
    width = batch["chosen_input_ids"].shape[1] - 1
    columns = prompt_lengths[:, None] - 1 + torch.arange(answers.shape[1], device=answers.device)
    grid_width = int(columns.max()) + 1
    grid = logps.new_zeros(answers.shape[0], grid_width).scatter(1, columns, logps)[:, :width]
    grid_mask = mask.new_zeros(answers.shape[0], grid_width).scatter(1, columns, mask)[:, :width]
    return PairLogps(grid[0::2], grid[1::2]), grid_mask[0::2], grid_mask[1::2]


def pair_token_logps_unshared(model, batch: dict) -> tuple[PairLogps, torch.Tensor, torch.Tensor]:
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
