"""Batched generation with a loaded checkpoint: used by the benchmark, feedback collection and the
HTTP service, so all three decode the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from rlhfv_ray.model.encoding import user_prompt


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0: greedy, the benchmark's decoding
    top_p: float = 1.0


@dataclass(frozen=True)
class Generation:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finished: bool  # ended with eos (False: cut at max_new_tokens)


@torch.inference_mode()
def generate(model, processor, images: Sequence[Image.Image], questions: Sequence[str],
             settings: GenerationSettings = GenerationSettings(), seed: int | None = None) -> list[Generation]:
    """One generation per (image, question), computed as a single left-padded batch."""
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions")
    if not images:
        return []
    tokenizer = processor.tokenizer
    previous_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation appends on the right
    try:
        inputs = processor(images=list(images), text=[user_prompt(processor, q) for q in questions],
                           padding=True, return_tensors="pt")
    finally:
        tokenizer.padding_side = previous_side
    inputs = {k: v.to(model.device) for k, v in inputs.items()}
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    sample = settings.temperature > 0
    kwargs = dict(max_new_tokens=settings.max_new_tokens, do_sample=sample,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    if sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p)
        if seed is not None:
            torch.manual_seed(seed)
    else:  # explicit, so a checkpoint's generation_config cannot switch the benchmark to sampling
        kwargs.update(temperature=None, top_p=None, top_k=None)
    output = model.generate(**inputs, **kwargs)
    prompt_width = inputs["input_ids"].shape[1]
    prompt_lengths = inputs["attention_mask"].sum(dim=1).tolist()
    results = []
    for row, prompt_tokens in zip(output[:, prompt_width:], prompt_lengths):
        ids = row.tolist()
        finished = tokenizer.eos_token_id in ids
        if finished:
            ids = ids[: ids.index(tokenizer.eos_token_id)]
        ids = [i for i in ids if i != tokenizer.pad_token_id]
        text = tokenizer.decode(ids, skip_special_tokens=True).strip()
        results.append(Generation(text, int(prompt_tokens), len(ids) + int(finished), finished))
    return results


def generate_batched(model, processor, images: Sequence[Image.Image], questions: Sequence[str],
                     settings: GenerationSettings = GenerationSettings(), batch_size: int = 64) -> list[Generation]:
    out: list[Generation] = []
    for start in range(0, len(images), batch_size):
        out += generate(model, processor, images[start:start + batch_size], questions[start:start + batch_size], settings)
    return out
