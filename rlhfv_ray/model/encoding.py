"""Turn (image, question, answer) into token ids, the same way for SFT, reference log-probs, DDPO
and generation, for any image-text-to-text family.

The text is the model's own chat template. A prompt is the template rendered up to the generation
prompt; an answer's tokens are the template's rendering of the assistant turn with the prompt
sliced off, cut after the family's end-of-turn token (`</s>`, `<|im_end|>`, `<end_of_turn>`,
`<end_of_utterance>`, ...): exactly what the model emits when it generates after that prompt and
stops. A processor without a chat template (PaliGemma) formats the prompt itself; its answers are
the text followed by eos, as its processor builds training suffixes.
"""

from __future__ import annotations

from typing import Sequence

import torch
from PIL import Image

IGNORE_INDEX = -100
_SENTINEL = "\x00answer\x00"


class TemplateError(ValueError):
    """The chat template does not render a conversation as a prompt followed by its answer."""


def _template(processor) -> str | None:
    return getattr(processor, "chat_template", None)


def _image_token(processor) -> str:
    return getattr(processor, "image_token", None) or ""


def _user(question: str, image: bool) -> dict:
    content = ([{"type": "image"}] if image else []) + [{"type": "text", "text": question}]
    return {"role": "user", "content": content}


def _assistant(answer: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": answer}]}


def _render(processor, messages: list[dict], generation_prompt: bool) -> str:
    return processor.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)


def user_prompt(processor, question: str) -> str:
    """The text of a one-image user turn followed by the generation prompt."""
    if _template(processor) is None:  # the processor adds bos and the separator itself
        return _image_token(processor) + question
    return _render(processor, [_user(question, image=True)], generation_prompt=True)


def render_messages(processor, messages: Sequence[dict]) -> str:
    """A chat (Hugging Face message format) as the prompt text the model generates after."""
    if _template(processor) is not None:
        return _render(processor, list(messages), generation_prompt=True)
    if len(messages) != 1 or messages[0].get("role") != "user":
        raise TemplateError("this model has no chat template: send one user message")
    parts = messages[0]["content"]
    return (_image_token(processor) * sum(part.get("type") == "image" for part in parts)
            + " ".join(part["text"] for part in parts if part.get("type") == "text"))


def add_special_tokens(tokenizer, texts: Sequence[str]) -> bool:
    """Whether tokenizing rendered `texts` should add the tokenizer's special tokens: not when the
    template already wrote bos (Gemma 3's does; tokenizing would give a second one)."""
    bos = tokenizer.bos_token
    return not (bos and texts and all(t.startswith(bos) for t in texts))


def end_of_turn_token(processor) -> str | None:
    """The special token the template closes an assistant turn with, or None if it writes none."""
    if _template(processor) is None:
        return None
    tokenizer = processor.tokenizer
    full = _render(processor, [_user("?", image=True), _assistant(_SENTINEL)], generation_prompt=False)
    tail = full[full.index(_SENTINEL) + len(_SENTINEL):]
    special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
    for token_id in tokenizer(tail, add_special_tokens=False)["input_ids"]:
        if token_id in special:
            return tokenizer.convert_ids_to_tokens(token_id)
    return None


def stop_token_ids(processor, end: str | None = None) -> list[int]:
    """Token ids that end a generation: eos and the template's end-of-turn token (`end`, found from
    the template when not given)."""
    tokenizer = processor.tokenizer
    ids = [tokenizer.eos_token_id]
    end = end if end is not None else end_of_turn_token(processor)
    if end is not None:
        ids.append(tokenizer.convert_tokens_to_ids(end))
    return list(dict.fromkeys(i for i in ids if i is not None))


def _cut_turn(text: str, stops: Sequence[str]) -> str:
    """`text` (an assistant turn without its prompt) up to and including its first stop token."""
    ends = [text.index(s) + len(s) for s in stops if s and s in text]
    return text[:min(ends)] if ends else text


def conversation_pieces(processor, turns: Sequence[tuple[str, str]],
                        end: str | None = None) -> list[tuple[str, str]]:
    """(prompt text, answer text) per turn of a conversation about one image (shown with the first
    question), such that their concatenation is the template's rendering of the conversation and
    each answer text ends with the end-of-turn token (`end`, found from the template when not given)."""
    tokenizer = processor.tokenizer
    if _template(processor) is None:
        if len(turns) > 1:
            raise TemplateError("a processor without a chat template takes one question per image")
        question, answer = turns[0]
        return [(question, answer.strip() + tokenizer.eos_token)]
    stops = [tokenizer.eos_token, end if end is not None else end_of_turn_token(processor)]
    messages: list[dict] = []
    consumed, pieces = "", []
    for k, (question, answer) in enumerate(turns):
        messages.append(_user(question, image=k == 0))
        prompt = _render(processor, messages, generation_prompt=True)
        messages.append(_assistant(answer.strip()))
        full = _render(processor, messages, generation_prompt=False)
        if not prompt.startswith(consumed) or not full.startswith(prompt):
            raise TemplateError("the chat template does not render the conversation as prompt + answer "
                                f"(turn {k + 1}): the answer's tokens cannot be sliced off")
        answer_text = _cut_turn(full[len(prompt):], stops)
        pieces.append((prompt[len(consumed):], answer_text))
        consumed = prompt + answer_text
    return pieces


def tokenize_answer(tokenizer, text: str, stop_ids: Sequence[int]) -> list[int]:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return ids if ids and ids[-1] in stop_ids else ids + [tokenizer.eos_token_id]


def encode_answers(processor, questions: Sequence[str], answers: Sequence[str]) -> list[list[int]]:
    """Answer token ids, each ending with the end-of-turn token (the model must learn to stop)."""
    end = end_of_turn_token(processor)
    stops = stop_token_ids(processor, end)
    return [tokenize_answer(processor.tokenizer, conversation_pieces(processor, [(q, a)], end)[0][1], stops)
            for q, a in zip(questions, answers)]


def prompt_inputs(processor, images: Sequence[Image.Image], questions: Sequence[str],
                  padding_side: str = "right") -> dict[str, torch.Tensor]:
    """Everything the processor gives the model for one-image prompts (input ids with the image
    tokens expanded, attention mask, pixel values and the family's other inputs: image sizes,
    grids, pixel masks, token types), padded on `padding_side`. Each prompt gets its own image list,
    the layout every family's processor reads as "one image per prompt"."""
    return processor_inputs(processor, [[image] for image in images], [user_prompt(processor, q) for q in questions],
                            padding_side)


def processor_inputs(processor, images: Sequence[Sequence[Image.Image]], texts: Sequence[str],
                     padding_side: str) -> dict[str, torch.Tensor]:
    """The processor's model inputs for rendered `texts`, each with its own list of images (in the
    order of its image tokens; the layout every family's processor reads per prompt)."""
    tokenizer = processor.tokenizer
    previous_side, tokenizer.padding_side = tokenizer.padding_side, padding_side
    try:
        return dict(processor(images=[list(row) for row in images] if any(images) else None, text=list(texts),
                              padding=True, return_tensors="pt",
                              add_special_tokens=add_special_tokens(tokenizer, texts)))
    finally:
        tokenizer.padding_side = previous_side


def unpadded(values: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """Rows of a padded (batch, seq) tensor without their padding (either side)."""
    return [row[mask.bool()].tolist() for row, mask in zip(values, attention_mask)]


def encode_prompts(processor, images: Sequence[Image.Image], questions: Sequence[str]) -> list[list[int]]:
    """Prompt token ids per example, with the image placeholder expanded as the model needs it."""
    inputs = prompt_inputs(processor, images, questions)
    return unpadded(inputs["input_ids"], inputs["attention_mask"])


def encode_conversations(processor, images: Sequence[Image.Image],
                         conversations: Sequence[Sequence[tuple[str, str]]]) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) of multi-turn conversations about one image each, as LLaVA's instruction
    data is: the image comes with the first question; every answer is a target, the rest is not.
    Turn 1 is exactly what `encode_prompts` + `encode_answers` give."""
    tokenizer = processor.tokenizer
    end = end_of_turn_token(processor)
    stops = stop_token_ids(processor, end)
    all_pieces = [conversation_pieces(processor, turns, end) for turns in conversations]
    first = encode_prompts(processor, images, [turns[0][0] for turns in conversations])
    out = []
    for prompt_ids, pieces in zip(first, all_pieces):
        ids, labels = list(prompt_ids), [IGNORE_INDEX] * len(prompt_ids)
        for turn, (prompt_text, answer_text) in enumerate(pieces):
            if turn:
                follow = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
                ids += follow
                labels += [IGNORE_INDEX] * len(follow)
            answer_ids = tokenize_answer(tokenizer, answer_text, stops)
            ids += answer_ids
            labels += answer_ids
        out.append((ids, labels))
    return out


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
