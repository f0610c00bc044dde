"""The model side of the service, without Ray: load a checkpoint, check each job, run a batch of jobs
as one streamed generation. The Serve deployment (`serve_app.model`) wraps it with `@serve.batch`;
tests and `LocalModelClient` call it directly.

What crosses from the ingress to a model replica is a `GenerationJob` (validated image bytes, chat
messages, settings); what comes back is a stream of `Chunk`s, the last one carrying a `Final`, or
one `Chunk` carrying a `JobError` for a job this replica refuses. A refused job never fails the
rest of its batch.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import AsyncIterator, Iterator, Sequence

from PIL import Image

from rlhfv_ray.images import ImageDecodeError, decode_image
from rlhfv_ray.model.encoding import TemplateError, render_messages
from rlhfv_ray.model.generate import GenerationSettings
from rlhfv_ray.model.compute import ComputeSettings, load_for_inference
from rlhfv_ray.model.streaming import batch_inputs, stream_generate
from serve_app.config import Limits


@dataclass(frozen=True)
class GenerationJob:
    images: tuple[bytes, ...]  # encoded, in the order of the image parts of `messages`
    messages: tuple[dict, ...]  # Hugging Face chat format; image parts are {"type": "image"}
    settings: GenerationSettings
    stream: bool = False  # wants its text step by step (otherwise only the final chunk matters)
    submitted_at: float = field(default_factory=time.time)  # wall clock: it crosses processes


@dataclass(frozen=True)
class JobError:
    status: int
    code: str
    message: str
    param: str | None = None


@dataclass(frozen=True)
class Final:
    text: str  # the whole text (the deltas before it concatenate to it)
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" (eos) or "length" (max_new_tokens reached)
    queue_ms: float  # submitted at the ingress -> its batch started
    generation_ms: float  # its batch started -> this row finished
    batch_size: int


@dataclass(frozen=True)
class Chunk:
    text: str = ""  # new text since the job's previous chunk
    final: Final | None = None
    error: JobError | None = None


async def final_chunk(chunks: AsyncIterator[Chunk]) -> Chunk:
    """The final (or error) chunk of a job's stream: the whole result, `final.text` its text."""
    async for chunk in chunks:
        if chunk.final is not None or chunk.error is not None:
            return chunk
    raise RuntimeError("generation ended without a final chunk")


class Engine:
    """One loaded checkpoint. Not thread-safe: one batch at a time (the deployment's
    `@serve.batch` runs one batch at a time per replica)."""

    def __init__(self, model_path: str, limits: Limits = Limits(), device: str = "auto", dtype: str = "auto"):
        self.model, self.processor = load_for_inference(model_path, ComputeSettings(device=device, dtype=dtype))
        self.limits = limits
        tokenizer = self.processor.tokenizer
        self.image_token = getattr(self.processor, "image_token", None) or "<image>"
        # Text a user sends must not contain the tokenizer's special tokens: an "<image>" would
        # break the image/placeholder count, an eos or role marker would forge the conversation.
        self.reserved = sorted({*tokenizer.all_special_tokens, self.image_token} - {""})
        self.max_positions = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)

    def _check(self, job: GenerationJob) -> tuple[list[Image.Image], str] | JobError:
        """Decoded images and the rendered prompt of a job, or why this replica refuses it. The
        ingress checks images and limits first; this is the replica's own defence, plus the checks
        that need the tokenizer."""
        images = []
        for index, data in enumerate(job.images):
            if len(data) > self.limits.max_image_bytes:
                return JobError(413, "image_too_large", f"image {index} is {len(data)} bytes; the limit is "
                                f"{self.limits.max_image_bytes}")
            try:
                images.append(decode_image(data, self.limits.max_pixels, frozenset(self.limits.image_formats)))
            except ImageDecodeError as error:
                return JobError(400, error.reason, f"image {index}: {error}")
        for message in job.messages:
            for part in message["content"]:
                text = part.get("text") or ""
                found = next((token for token in self.reserved if token in text), None)
                if found:
                    return JobError(400, "reserved_token", f"text contains the reserved token {found!r}")
        parts = sum(part.get("type") == "image" for message in job.messages for part in message["content"])
        if parts != len(images):
            return JobError(400, "image_count_mismatch", f"{len(images)} images for {parts} image parts", "messages")
        try:
            return images, render_messages(self.processor, job.messages)
        except TemplateError as error:
            return JobError(400, "unsupported_messages", str(error), "messages")

    def _inputs(self, checked: list, accepted: list[int]):
        """Model inputs of the accepted jobs. If the processor fails on the batch, each job is tried
        alone, so only the jobs it fails on get an error (in `checked`) and are dropped."""
        try:
            return batch_inputs(self.processor, [checked[i][0] for i in accepted], [checked[i][1] for i in accepted])
        except Exception:  # noqa: BLE001 - which job caused it is found below
            pass
        for i in accepted:
            try:
                batch_inputs(self.processor, [checked[i][0]], [checked[i][1]])
            except Exception as error:  # noqa: BLE001 - the job's own inputs: its error, not the batch's
                checked[i] = JobError(422, "unprocessable_input", f"the model's processor refused it: {error}")
        kept = [i for i in accepted if not isinstance(checked[i], JobError)]
        accepted[:] = kept
        if not kept:
            return None
        return batch_inputs(self.processor, [checked[i][0] for i in kept], [checked[i][1] for i in kept])

    def run(self, jobs: Sequence[GenerationJob]) -> Iterator[list[Chunk | None]]:
        """Lists with an item per job: a Chunk, or None once the job has ended (its final or error
        chunk was sent). Runs one batched generation for the accepted jobs. A list comes only for
        a step where some job gets something: a streaming job new text, any job its end (each
        list costs the caller work per job, for every one of up to hundreds of steps)."""
        started = time.time()
        checked = [self._check(job) for job in jobs]
        accepted = [i for i, c in enumerate(checked) if not isinstance(c, JobError)]
        inputs = None
        if accepted:
            inputs = self._inputs(checked, accepted)
        if inputs is not None:
            too_long = self._too_long(inputs, [jobs[i] for i in accepted])
            if too_long:
                for row, message in too_long.items():
                    checked[accepted[row]] = JobError(400, "context_length_exceeded", message, "max_new_tokens")
                accepted = [i for i in accepted if not isinstance(checked[i], JobError)]
                inputs = batch_inputs(self.processor, [checked[i][0] for i in accepted],
                                      [checked[i][1] for i in accepted]) if accepted else None
        if len(accepted) < len(jobs):  # refused jobs get their error at once
            yield [Chunk(error=c) if isinstance(c, JobError) else Chunk() for c in checked]
        if not accepted:
            return
        slot = {job_index: row for row, job_index in enumerate(accepted)}
        settings = [jobs[i].settings for i in accepted]
        for step in stream_generate(self.model, self.processor, inputs, settings):
            if not any(item is not None and (item.generation is not None or (item.text and jobs[i].stream))
                       for i, item in zip(accepted, step)):
                continue  # nothing anyone waits for: unary jobs take only their final chunk
            now = time.time()
            out: list[Chunk | None] = []
            for i, job in enumerate(jobs):
                item = step[slot[i]] if i in slot else None
                if item is None:
                    out.append(None)
                elif item.generation is None:
                    out.append(Chunk(item.text))
                else:
                    g = item.generation
                    out.append(Chunk(item.text, Final(
                        g.text, g.prompt_tokens, g.completion_tokens, "stop" if g.finished else "length",
                        queue_ms=1000 * max(0.0, started - job.submitted_at), generation_ms=1000 * (now - started),
                        batch_size=len(jobs))))
            yield out

    def _too_long(self, inputs, jobs: Sequence[GenerationJob]) -> dict[int, str]:
        """Rows whose prompt plus max_new_tokens exceed the model's context."""
        if not self.max_positions:
            return {}
        lengths = inputs["attention_mask"].sum(dim=1).tolist()
        return {row: f"the prompt is {n} tokens and max_new_tokens is {job.settings.max_new_tokens}; the model's "
                     f"context is {self.max_positions} tokens"
                for row, (n, job) in enumerate(zip(lengths, jobs))
                if n + job.settings.max_new_tokens > self.max_positions}


async def iterate_in_thread(steps: Iterator) -> AsyncIterator:
    """Drive a blocking iterator from asyncio: each `next` runs in a worker thread, so the event
    loop stays free (a replica keeps accepting requests into the next batch meanwhile)."""
    done = object()
    try:
        while (item := await asyncio.to_thread(next, steps, done)) is not done:
            yield item
    finally:
        close = getattr(steps, "close", None)
        if close is not None:
            try:
                close()
            except ValueError:  # still executing in its thread (the caller was cancelled): it ends on its own
                pass
