"""Turn (image, question, answer) into model inputs, the same way for SFT, reference log-probs,
DDPO and generation: the prompt is the processor's chat template with the generation prompt, and
the answer is tokenized on its own (" " + answer + eos), which is exactly what the model emits when
it generates after that prompt."""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

IGNORE_INDEX = -100


def user_prompt(processor, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def encode_prompts(processor, images: Sequence[Image.Image], questions: Sequence[str]) -> list[list[int]]:
    """Prompt token ids per example, with the image placeholder expanded as the model needs it."""
    texts = [user_prompt(processor, q) for q in questions]
    encoded = processor(images=list(images), text=texts, padding=False)
    return [list(ids) for ids in encoded["input_ids"]]


def encode_answers(tokenizer, answers: Sequence[str]) -> list[list[int]]:
    """Answer token ids, each ending with eos (the model must learn to stop)."""
    ids = tokenizer([" " + a.strip() for a in answers], add_special_tokens=False)["input_ids"]
    return [list(x) + [tokenizer.eos_token_id] for x in ids]


def follow_up_prompt(processor, question: str) -> str:
    """A later user turn of a conversation (no image), as the chat template renders it."""
    messages = [{"role": "user", "content": [{"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


def encode_conversations(processor, images: Sequence[Image.Image],
                         conversations: Sequence[Sequence[tuple[str, str]]]) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of multi-turn conversations about one image each, as LLaVA's instruction
    data is: the image comes with the first question; every answer is a target, the rest is not.
    Built turn by turn from the same pieces as single-turn examples, so turn 1 is exactly what
    `encode_prompts` + `encode_answers` give."""
    tokenizer = processor.tokenizer
    first = encode_prompts(processor, images, [turns[0][0] for turns in conversations])
    out = []
    for prompt_ids, turns in zip(first, conversations):
        answers = encode_answers(tokenizer, [a for _, a in turns])
        ids, labels = list(prompt_ids), [IGNORE_INDEX] * len(prompt_ids)
        for turn, ((question, _), answer_ids) in enumerate(zip(turns, answers)):
            if turn:
                follow = tokenizer(follow_up_prompt(processor, question), add_special_tokens=False)["input_ids"]
                ids += follow
                labels += [IGNORE_INDEX] * len(follow)
            ids += answer_ids
            labels += answer_ids
        out.append((ids, labels))
    return out


def pixel_values(processor, images: Sequence[Image.Image]) -> torch.Tensor:
    return processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]


def pad_right(sequences: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    """(batch, max_len) tensor of `sequences` padded on the right with `value`."""
    width = max(len(s) for s in sequences)
    out = torch.full((len(sequences), width), value, dtype=torch.long)
    for i, seq in enumerate(sequences):
        out[i, : len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return out


def pad_lm_batch(input_ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]],
                 pad_token_id: int) -> dict[str, torch.Tensor]:
    """input_ids/attention_mask/labels (batch, seq), right-padded, for teacher forcing."""
    return {"input_ids": pad_right(input_ids, pad_token_id),
            "attention_mask": pad_right([[1] * len(i) for i in input_ids], 0),
            "labels": pad_right(labels, IGNORE_INDEX)}


def build_lm_batch(prompt_ids: Sequence[Sequence[int]], answer_ids: Sequence[Sequence[int]],
                   pad_token_id: int) -> dict[str, torch.Tensor]:
    """Single-turn teacher forcing: the labels are the answer only."""
    full = [list(p) + list(a) for p, a in zip(prompt_ids, answer_ids)]
    labels = [[IGNORE_INDEX] * len(p) + list(a) for p, a in zip(prompt_ids, answer_ids)]
    return pad_lm_batch(full, labels, pad_token_id)
