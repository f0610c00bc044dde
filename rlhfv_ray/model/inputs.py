"""Model inputs of teacher-forced batches (SFT, rehearsal, preference pairs) for any family.

A batch's image inputs (pixel values, image sizes, grids, pixel masks) and the prompt's token types
come from the same processor call that makes prompt ids (`encoding.prompt_inputs`); the stored ids
are checked against it, so a row tokenized by another processor fails loudly instead of training on
misaligned image tokens. Token types continue over the answer with the value a generated token gets
(`families.generated_token_type`).
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

from rlhfv_ray.model.encoding import pad_lm_batch, prompt_inputs, unpadded
from rlhfv_ray.model.families import TOKEN_ALIGNED_KEYS, generated_token_type

# not image inputs: PaliGemma's processor also returns labels (its prompt masked), unused here
TEXT_KEYS = ("input_ids", "attention_mask", "labels")


class PromptMismatchError(ValueError):
    """Stored prompt ids differ from what the processor makes of the same image and question."""


def split_prompt_inputs(prompt: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, list[list[int]]]]:
    """(image inputs, per-token inputs of each prompt without padding) of `prompt_inputs`' output."""
    image = {k: v for k, v in prompt.items() if k not in TEXT_KEYS and k not in TOKEN_ALIGNED_KEYS}
    per_token = {k: unpadded(prompt[k], prompt["attention_mask"]) for k in TOKEN_ALIGNED_KEYS if k in prompt}
    return image, per_token


def check_prompts(prompt: dict[str, torch.Tensor], sequences: Sequence[Sequence[int]]) -> list[int]:
    """Prompt lengths, after checking every stored sequence starts with the processor's prompt."""
    lengths = []
    for i, (made, stored) in enumerate(zip(unpadded(prompt["input_ids"], prompt["attention_mask"]), sequences)):
        if list(stored[:len(made)]) != made:
            raise PromptMismatchError(
                f"row {i}: its stored prompt ids differ from the processor's for the same image and "
                "question: the data was tokenized with another processor or chat template; rebuild it")
        lengths.append(len(made))
    return lengths


def extend_per_token(per_token: dict[str, list[list[int]]], lengths: Sequence[int], width: int,
                     fill: int) -> dict[str, torch.Tensor]:
    """(batch, width) per-token inputs: each row's prompt values, then `fill` up to its `lengths`
    (the answer and later turns), 0 on the right padding."""
    out = {}
    for key, rows in per_token.items():
        tensor = torch.zeros(len(rows), width, dtype=torch.long)
        for i, (values, length) in enumerate(zip(rows, lengths)):
            tensor[i, :length] = fill
            tensor[i, :len(values)] = torch.as_tensor(values, dtype=torch.long)
        out[key] = tensor
    return out


def lm_batch(processor, images: Sequence[Image.Image], questions: Sequence[str],
             input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """Teacher-forcing inputs of conversations (their first question shown with the image): padded
    ids, mask and labels, image inputs and per-token inputs."""
    batch = pad_lm_batch(input_ids, labels, processor.tokenizer.pad_token_id)
    prompt = prompt_inputs(processor, images, questions)
    check_prompts(prompt, input_ids)
    image, per_token = split_prompt_inputs(prompt)
    batch.update(image)
    batch.update(extend_per_token(per_token, [len(x) for x in input_ids], batch["input_ids"].shape[1],
                                  generated_token_type(processor)))
    return batch

