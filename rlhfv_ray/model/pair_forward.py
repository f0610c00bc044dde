"""Preference pairs -> padded tensors, and the policy/reference forward over both answers.

One place builds pair batches, for the reference log-prob stage and for the DDPO trainer, so the
cached reference log-probs line up token for token with what the trainer computes.

The plain forward (`pair_token_logps_plain`) runs chosen and rejected as two full sequences with
every input the processor gives (image sizes, grids, pixel masks, token types), positions and
attention as the model computes them. Chosen and rejected share their prompt (image tokens
included), so where a family is proven equal under it (`families.py`) the forward runs the prompt
once, with both answers packed after it in one row (`packing.py`): the vision tower and the prompt
tokens are computed once per pair instead of twice (for LLaVA-1.5, 576 image tokens against
answers of about 100, most of the work), under gradient checkpointing too. The rows' padding is
left out of everything but attention (`unpadded.py`).

Per-answer-token arrays (corrected masks, reference log-probs) are stored per row with one value
per answer token. In a batch they are placed on the (batch, seq - 1) grid of `token_logps`: the
answer of a row with prompt length P occupies columns P - 1 .. P - 2 + len(answer).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from rlhfv_ray.images import decode_image
from rlhfv_ray.model.encoding import IGNORE_INDEX, build_lm_batch, pad_right, prompt_inputs
from rlhfv_ray.model.families import (TOKEN_ALIGNED_KEYS, answer_positions, attention_kernel, attention_windows,
                                      enable_unpadded_attention, generated_token_type, prompt_blocks,
                                      prompt_positions, to_model, uses_shared_prompt)
from rlhfv_ray.model.inputs import PromptMismatchError, check_prompts, extend_per_token, split_prompt_inputs
from rlhfv_ray.model.logprobs import PairLogps, label_logps, token_logps
from rlhfv_ray.model.packing import (PADDING, four_d_mask, pack_answers, packed_attention, packed_layout,
                                     predictor_index)
from rlhfv_ray.model.unpadded import PackedSlots

IMAGE_PREFIX = "image_inputs."


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


def pair_widths(rows: dict) -> np.ndarray:
    """Each pair's width in a batch: its prompt and its longer answer (chosen and rejected share
    one width, so they can run as one forward)."""
    return np.array([len(p) + max(len(c), len(r))
                     for p, c, r in zip(rows["prompt_ids"], rows["chosen_ids"], rows["rejected_ids"])])


def pair_batch(rows: dict, processor) -> dict[str, torch.Tensor]:
    """Tensors of a batch of shard rows (columns as numpy arrays/lists, as Ray Data gives them)."""
    pad_id = processor.tokenizer.pad_token_id
    prompts = [list(p) for p in rows["prompt_ids"]]
    chosen, rejected = [list(a) for a in rows["chosen_ids"]], [list(a) for a in rows["rejected_ids"]]
    images = [decode_image(bytes(b)) for b in rows["image"]]
    # left-padded: every prompt ends in the last column, whose logits predict the first answer token
    prompt = prompt_inputs(processor, images, [str(q) for q in rows["question"]], padding_side="left")
    if check_prompts(prompt, [p + c for p, c in zip(prompts, chosen)]) != [len(p) for p in prompts]:
        raise PromptMismatchError("stored prompt ids are longer than the processor's for the same image and "
                                  "question: the shards were tokenized with another processor; rebuild them")
    image_inputs, per_token = split_prompt_inputs(prompt)
    width = int(pair_widths(rows).max())
    batch: dict[str, torch.Tensor] = {IMAGE_PREFIX + k: v for k, v in image_inputs.items()}
    batch.update({"prompt_" + k: prompt[k] for k in ("input_ids", "attention_mask", *per_token)})
    for name, answers in (("chosen", chosen), ("rejected", rejected)):
        side = _side(prompts, answers, pad_id, width)
        side.update(extend_per_token(per_token, [len(p) + len(a) for p, a in zip(prompts, answers)], width,
                                     generated_token_type(processor)))
        batch.update({f"{name}_{k}": v for k, v in side.items()})
        for key in (f"{name}_corrected", f"ref_{name}_logps"):
            values = rows.get(key)
            if values is not None:
                batch[key] = place_answer_values([len(p) for p in prompts], values, width - 1)
    answers = [a for pair in zip(chosen, rejected) for a in pair]  # chosen 0, rejected 0, chosen 1, ...
    batch["answer_input_ids"] = pad_right(answers, pad_id)
    batch["answer_attention_mask"] = pad_right([[1] * len(a) for a in answers], 0)
    for key in per_token:  # answer tokens take the type a generated token gets
        batch[f"answer_{key}"] = pad_right([[generated_token_type(processor)] * len(a) for a in answers], 0)
    return batch


def _image_inputs(batch: dict, model) -> dict[str, torch.Tensor]:
    """The batch's image inputs, pixel values in the model's dtype (bf16 on GPU)."""
    return to_model({k[len(IMAGE_PREFIX):]: v for k, v in batch.items() if k.startswith(IMAGE_PREFIX)}, model)


def _side_inputs(batch: dict, name: str) -> dict[str, torch.Tensor]:
    keys = ("input_ids", "attention_mask", *TOKEN_ALIGNED_KEYS)
    return {k: batch[f"{name}_{k}"] for k in keys if f"{name}_{k}" in batch}


def pair_token_logps(model, batch: dict) -> tuple[PairLogps, torch.Tensor, torch.Tensor]:
    """Per-token log-probs and masks of chosen and rejected answers on the (batch, seq - 1) grid of
    `token_logps`: the shared-prompt forward where the family is proven equal under it, the plain
    forward otherwise (`families.py`)."""
    forward = pair_token_logps_shared if uses_shared_prompt(model) else pair_token_logps_plain
    return forward(model, batch)


def pair_token_logps_shared(model, batch: dict) -> tuple[PairLogps, torch.Tensor, torch.Tensor]:
    """`pair_token_logps` from one row per pair, both answers packed after the prompt (`packing.py`),
    the rows' real tokens run end to end without their padding (`unpadded.py`)."""
    prompt_mask = batch["prompt_attention_mask"]
    prompt = {k[len("prompt_"):]: v for k, v in batch.items() if k.startswith("prompt_")}
    images = _image_inputs(batch, model)
    positions, next_positions = prompt_positions(model, {**prompt, **images})
    answers, answer_mask = batch["answer_input_ids"], batch["answer_attention_mask"]
    layout = packed_layout(prompt_mask, answer_mask)
    prompt_width = prompt_mask.shape[1]
    inputs = {key: pack_answers(batch[f"answer_{key}"], prompt[key], layout.columns, layout.width)
              for key in ("input_ids", *TOKEN_ALIGNED_KEYS) if key in prompt}
    answer_part = answer_positions(next_positions, layout.offsets, positions)
    inputs["position_ids"] = torch.cat([positions, answer_part], dim=-1)
    text_positions = inputs["position_ids"] if positions.ndim == 2 else inputs["position_ids"][0]
    masks = _packed_masks(model, layout, prompt, text_positions)
    slots = PackedSlots.of(layout.region != PADDING)
    inputs = {key: slots.unpad(values) for key, values in inputs.items()}
    # each answer token's predictor (see predictor_index) as an index into the unpadded sequence;
    # logits only there (the vocabulary projection is large)
    predictor_columns = prompt_width - 1 + predictor_index(layout, prompt_width).view(len(prompt_mask), -1)
    predictors = slots.flat_positions(predictor_columns)
    kept, predictors = torch.unique(predictors, return_inverse=True)
    enable_unpadded_attention(model)
    logits = model(**inputs, **images, attention_mask=masks, packed_slots=slots, use_cache=False,
                   logits_to_keep=kept).logits[0]
    logps, mask = label_logps(logits[predictors].view(len(answers), answers.shape[1], -1),
                              answers.masked_fill(answer_mask == 0, IGNORE_INDEX))
    # onto the full-sequence grid: a row with prompt length P has answer token k in column P - 1 + k.
    # The scatter grid (longest prompt + longest answer - 1 columns) is never narrower than the
    # grid's width; the columns past it hold only padding (masked) and are cut.
    width = batch["chosen_input_ids"].shape[1] - 1
    prompt_lengths = prompt_mask.sum(-1).repeat_interleave(2)
    columns = prompt_lengths[:, None] - 1 + torch.arange(answers.shape[1], device=answers.device)
    grid_width = int(columns.max()) + 1
    grid = logps.new_zeros(answers.shape[0], grid_width).scatter(1, columns, logps)[:, :width]
    grid_mask = mask.new_zeros(answers.shape[0], grid_width).scatter(1, columns, mask)[:, :width]
    return PairLogps(grid[0::2], grid[1::2]), grid_mask[0::2], grid_mask[1::2]


def _packed_masks(model, layout, prompt: dict, text_positions: torch.Tensor):
    """The packed rows' 4-D mask, or one per layer type where the layers' sliding windows differ."""
    blocks = prompt_blocks(model, prompt)
    attention, dtype = attention_kernel(model)

    def mask(window: int | None) -> torch.Tensor:
        return four_d_mask(packed_attention(layout.region, blocks, text_positions, window), attention, dtype)

    windows = attention_windows(model)
    return {kind: mask(w) for kind, w in windows.items()} if isinstance(windows, dict) else mask(windows)


def pair_token_logps_plain(model, batch: dict) -> tuple[PairLogps, torch.Tensor, torch.Tensor]:
    """One forward over chosen and rejected full sequences (stacked), positions and attention as
    the model computes them: the definition the shared forward is tested against."""
    n = batch["chosen_input_ids"].shape[0]
    chosen, rejected = _side_inputs(batch, "chosen"), _side_inputs(batch, "rejected")
    # every image input is per image along dim 0 (Qwen-VL's flattened patches too): stacking the
    # batch twice gives each sequence its image
    images = {k: torch.cat([v, v]) for k, v in _image_inputs(batch, model).items()}
    outputs = model(**{k: torch.cat([chosen[k], rejected[k]]) for k in chosen}, **images, use_cache=False)
    labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
    logps, mask = token_logps(outputs.logits, labels)
    return PairLogps(logps[:n], logps[n:]), mask[:n], mask[n:]


def answer_values(values: torch.Tensor, mask: torch.Tensor) -> list[list[float]]:
    """Inverse of `place_answer_values` for masked rows: one list of answer-token values per row."""
    return [row[m].tolist() for row, m in zip(values, mask)]
