"""Batched generation with a loaded checkpoint: used by the benchmark, feedback collection and the
HTTP service, so all three decode the same way."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from rlhfv_ray.model.encoding import prompt_inputs, stop_token_ids
from rlhfv_ray.model.families import to_model


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
    # left-padded: generation appends on the right
    inputs = to_model(prompt_inputs(processor, images, questions, padding_side="left"), model)
    stops = stop_token_ids(processor)
    sample = settings.temperature > 0
    kwargs = dict(max_new_tokens=settings.max_new_tokens, do_sample=sample,
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=stops)
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
        ends = [k for k, token in enumerate(ids) if token in stops]
        finished = bool(ends)
        if finished:
            ids = ids[: ends[0]]
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
