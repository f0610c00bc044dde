"""The model deployment: an `Engine` per replica, requests batched with `@serve.batch`.

Unary and streaming requests share one batch queue: the batch function is an async generator
yielding, per decoding step, one chunk per request (Serve routes each to its caller), so a streamed
chat and a caption computed in the same batch both get their text from the same forward passes.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator

import torch
from ray import serve

from serve_app.config import Batching, Limits
from serve_app.engine import Chunk, Engine, GenerationJob, final_chunk, iterate_in_thread

# A replica whose batches keep failing (not a bad request: those are refused per job) is broken,
# e.g. a CUDA error; failing its health check makes Serve replace it.
UNHEALTHY_AFTER_FAILED_BATCHES = 3


async def _drain(chunks: AsyncIterator) -> None:
    with contextlib.suppress(Exception):  # the job already has its answer
        async for _ in chunks:
            pass


@serve.deployment(name="CaptionModel")
class CaptionModel:
    def __init__(self, model_path: str, limits: Limits, device: str = "auto", dtype: str = "auto",
                 torch_threads: int | None = None):
        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.engine = Engine(model_path, limits, device, dtype)
        self.failed_batches = 0
        self._draining: set[asyncio.Task] = set()

    def reconfigure(self, user_config: dict) -> None:
        """Batch size and wait come as `user_config`, so they change without restarting replicas."""
        batching = Batching.model_validate(user_config)
        self._run_batch.set_max_batch_size(batching.max_batch_size)
        self._run_batch.set_batch_wait_timeout_s(batching.batch_wait_timeout_s)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.02)
    async def _run_batch(self, jobs: list[GenerationJob]) -> AsyncIterator[list]:
        try:
            async for step in iterate_in_thread(self.engine.run(jobs)):
                # StopIteration tells @serve.batch that this request's stream has ended
                yield [StopIteration if chunk is None else chunk for chunk in step]
        except Exception:
            self.failed_batches += 1
            raise
        self.failed_batches = 0

    async def _job_chunks(self, job: GenerationJob) -> AsyncIterator[Chunk]:
        """This job's chunks, ending with its final (or error) chunk at once: its stream from
        @serve.batch only ends at the batch's next step, so the rest is drained in the background
        (a request finished early in a batch of longer ones answers without waiting for them)."""
        chunks = self._run_batch(job)
        try:
            async for chunk in chunks:
                yield chunk
                if chunk.final is not None or chunk.error is not None:
                    break
        finally:
            task = asyncio.get_running_loop().create_task(_drain(chunks))
            self._draining.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._draining.discard)

    async def generate(self, job: GenerationJob) -> Chunk:
        """The whole result as one chunk: the final (or error) chunk, whose `final.text` is the text."""
        return await final_chunk(self._job_chunks(job))

    async def stream(self, job: GenerationJob) -> AsyncIterator[Chunk]:
        """Text deltas as produced (empty ones, steps inside a word, are not sent), then the final."""
        async for chunk in self._job_chunks(job):
            if chunk.text or chunk.final is not None or chunk.error is not None:
                yield chunk

    def check_health(self) -> None:
        if self.failed_batches >= UNHEALTHY_AFTER_FAILED_BATCHES:
            raise RuntimeError(f"{self.failed_batches} consecutive batches failed")
