"""Batched generation for a server: each request keeps its own settings inside one batch, and its
text arrives step by step.

`generate.generate` runs one batch with one `GenerationSettings`. A server batches requests that
each carry their own max_new_tokens / temperature / top_p, and a streaming client wants its words
as they are produced. This module runs the same `model.generate` on the same left-padded inputs,
adding three standard `transformers` hooks:

- a stopping criterion ending each row at its own max_new_tokens (a row stopped early is then
  padded by `generate`, exactly as a row that emitted eos);
- a logits processor applying each row's temperature and top-p; a greedy row keeps only its
  argmax, so it decodes greedily even inside a sampled batch. A batch of greedy rows only does not
  sample at all, and then gives exactly `generate.generate`'s texts and token counts;
- a streamer receiving each step's tokens in the generation thread and handing them, through a
  queue, to the caller's iterator.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from PIL import Image
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList
from transformers.generation.streamers import BaseStreamer

from rlhfv_ray.model.encoding import processor_inputs, stop_token_ids
from rlhfv_ray.model.families import to_model
from rlhfv_ray.model.generate import Generation, GenerationSettings

_END = object()


@dataclass(frozen=True)
class StreamStep:
    text: str  # text produced since the row's previous step ("" while a word is incomplete)
    generation: Generation | None = None  # set on the row's last step: full text and token counts


def batch_inputs(processor, images: Sequence[Sequence[Image.Image]], prompts: Sequence[str]) -> dict[str, torch.Tensor]:
    """Left-padded model inputs for rendered prompts (chat template applied), one list of images
    per prompt in the order of its image tokens. Same tokenization as `generate.generate`."""
    return processor_inputs(processor, images, prompts, padding_side="left")  # generation appends on the right


class _QueueStreamer(BaseStreamer):
    """`generate` calls put() with the prompt ids first, then with each step's tokens (batch,)."""

    def __init__(self):
        self.queue: queue.Queue = queue.Queue()
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self.queue.put(value.reshape(-1).tolist())

    def end(self) -> None:
        self.queue.put(_END)


class _RowLimits(StoppingCriteria):
    """Row i is done after limits[i] new tokens; `cancel()` ends every row at the next step."""

    def __init__(self, prompt_width: int, limits: Sequence[int]):
        self.prompt_width = prompt_width
        self.limits = torch.tensor(list(limits))
        self.cancelled = False

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        generated = input_ids.shape[1] - self.prompt_width
        done = self.limits.to(input_ids.device) <= generated
        return done | self.cancelled


class _RowSampling(LogitsProcessor):
    """Per-row temperature and top-p (nucleus) filtering; rows with temperature 0 keep only their
    argmax, which multinomial sampling then returns with probability 1."""

    def __init__(self, temperatures: Sequence[float], top_ps: Sequence[float]):
        self.temperatures = torch.tensor(list(temperatures), dtype=torch.float32)
        self.top_ps = torch.tensor(list(top_ps), dtype=torch.float32)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        temperatures = self.temperatures.to(scores.device)
        top_ps = self.top_ps.to(scores.device)
        greedy = temperatures == 0
        scaled = scores / temperatures.clamp(min=1e-6)[:, None]  # (batch, vocab)
        sorted_logits, order = scaled.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token once the tokens before it already hold top_p of the mass (the first never)
        drop_sorted = ((probs.cumsum(dim=-1) - probs) >= top_ps[:, None]) & (top_ps < 1)[:, None]
        drop = drop_sorted.scatter(1, order, drop_sorted)
        scaled = scaled.masked_fill(drop, float("-inf"))
        argmax_only = torch.full_like(scores, float("-inf")).scatter(1, scores.argmax(dim=-1, keepdim=True), 0.0)
        return torch.where(greedy[:, None], argmax_only, scaled)


class _RowDecoder:
    """Token ids of one row -> text deltas. The text is decoded whole at every step (as
    transformers' TextStreamer does) and only its new suffix is emitted; a trailing replacement
    character (half of a multi-byte character) and trailing spaces are held back, so the
    concatenated deltas equal the final stripped text."""

    def __init__(self, tokenizer, max_new_tokens: int, prompt_tokens: int, stop_ids: Sequence[int]):
        self.tokenizer = tokenizer
        self.stop_ids = frozenset(stop_ids)
        self.max_new_tokens = max_new_tokens
        self.prompt_tokens = prompt_tokens
        self.ids: list[int] = []
        self.steps = 0
        self.emitted = ""
        self.done = False

    def _text(self) -> str:
        return self.tokenizer.decode(self.ids, skip_special_tokens=True).strip()

    def step(self, token: int) -> StreamStep | None:
        if self.done:
            return None
        self.steps += 1
        if token in self.stop_ids:
            return self.finish(finished=True)
        if token != self.tokenizer.pad_token_id:  # generate.generate drops pad ids the same way
            self.ids.append(token)
        if self.steps >= self.max_new_tokens:
            return self.finish(finished=False)
        text = self._text()
        if text.endswith("\ufffd") or not text.startswith(self.emitted):
            return StreamStep("")
        delta, self.emitted = text[len(self.emitted):], text
        return StreamStep(delta)

    def finish(self, finished: bool) -> StreamStep:
        self.done = True
        text = self._text()
        delta = text[len(self.emitted):] if text.startswith(self.emitted) else ""
        generation = Generation(text, self.prompt_tokens, len(self.ids) + int(finished), finished)
        return StreamStep(delta, generation)


def stream_generate(model, processor, inputs: dict[str, torch.Tensor],
                    settings: Sequence[GenerationSettings]) -> Iterator[list[StreamStep | None]]:
    """Generate for every row of `inputs` (from `batch_inputs`); yield, after every decoding step,
    one item per row: a StreamStep, or None once that row has ended. Every row ends with a
    StreamStep carrying its Generation. Closing the iterator early stops the generation."""
    tokenizer = processor.tokenizer
    if len(settings) != inputs["input_ids"].shape[0]:
        raise ValueError(f"{inputs['input_ids'].shape[0]} rows but {len(settings)} settings")
    inputs = to_model(inputs, model)
    stops = stop_token_ids(processor)
    prompt_width = inputs["input_ids"].shape[1]
    limits = _RowLimits(prompt_width, [s.max_new_tokens for s in settings])
    streamer = _QueueStreamer()
    kwargs = dict(max_new_tokens=max(s.max_new_tokens for s in settings), streamer=streamer,
                  stopping_criteria=StoppingCriteriaList([limits]),
                  pad_token_id=tokenizer.pad_token_id, eos_token_id=stops)
    if any(s.temperature > 0 for s in settings):
        # neutral built-in warpers (a checkpoint's generation_config may set top_k etc.): the
        # per-row processor alone decides
        kwargs.update(do_sample=True, temperature=1.0, top_p=1.0, top_k=0, logits_processor=LogitsProcessorList(
            [_RowSampling([s.temperature for s in settings], [s.top_p for s in settings])]))
    else:
        kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with torch.inference_mode():
                model.generate(**inputs, **kwargs)
        except BaseException as error:  # re-raised in the caller's thread
            failure.append(error)
        finally:
            streamer.end()  # a second end marker after generate's own is harmless

    rows = [_RowDecoder(tokenizer, s.max_new_tokens, int(n), stops)
            for s, n in zip(settings, inputs["attention_mask"].sum(dim=1).tolist())]
    thread = threading.Thread(target=run, name="stream-generate", daemon=True)
    thread.start()
    try:
        while (tokens := streamer.queue.get()) is not _END:
            yield [row.step(token) for row, token in zip(rows, tokens)]
        thread.join()
        if failure:
            raise failure[0]
        if not all(row.done for row in rows):  # generation ended early (cancelled): close the rest
            yield [None if row.done else row.finish(finished=False) for row in rows]
    finally:
        limits.cancelled = True  # a consumer that stops early must not leave the thread running
        thread.join()
