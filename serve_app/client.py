"""How the ingress reaches the model: through a Serve deployment handle, or (tests, a single process)
an in-process `Engine`. Both give `generate(job) -> Chunk` and `stream(job) -> chunks`; Ray's
failures become ApiErrors here, so the handler never sees a Ray exception."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator, Protocol

from serve_app.engine import Chunk, Engine, GenerationJob, final_chunk, iterate_in_thread
from serve_app.errors import ApiError


class ModelClient(Protocol):
    async def generate(self, job: GenerationJob) -> Chunk: ...

    def stream(self, job: GenerationJob) -> AsyncIterator[Chunk]: ...


class ServeModelClient:
    """Calls the model deployment. Overload (its `max_queued_requests` reached at this caller) and
    a replica lost mid-request (killed, node gone) are answered 503/429 with Retry-After: both are
    worth retrying, and a client that retries them loses nothing when a replica dies."""

    def __init__(self, handle, overload_status: int = 503, retry_after_s: int = 1):
        self.handle = handle
        self.overload_status = overload_status
        self.retry_after_s = retry_after_s

    def _translate(self, error: BaseException) -> ApiError | None:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
        from ray.serve.exceptions import BackPressureError, DeploymentUnavailableError

        headers = {"Retry-After": str(self.retry_after_s)}
        if isinstance(error, BackPressureError):
            return ApiError(self.overload_status, "overloaded", "the model is at capacity; retry later",
                            headers=headers)
        if isinstance(error, (ActorDiedError, ActorUnavailableError, RayActorError, DeploymentUnavailableError)):
            return ApiError(503, "model_unavailable", "the model replica was lost; retry", headers=headers)
        return None

    async def generate(self, job: GenerationJob) -> Chunk:
        try:
            return await self.handle.generate.remote(job)
        except Exception as error:
            raise self._translate(error) or error

    async def stream(self, job: GenerationJob) -> AsyncIterator[Chunk]:
        try:
            async for chunk in self.handle.options(stream=True).stream.remote(job):
                yield chunk
        except Exception as error:
            raise self._translate(error) or error


class LocalModelClient:
    """An Engine in this process, one job at a time (no batching): for tests and tools."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._lock = asyncio.Lock()

    async def generate(self, job: GenerationJob) -> Chunk:
        return await final_chunk(self.stream(job))

    async def stream(self, job: GenerationJob) -> AsyncIterator[Chunk]:
        async with self._lock:
            async for step in iterate_in_thread(self.engine.run([job])):
                chunk = step[0]
                if chunk is not None and (chunk.text or chunk.final is not None or chunk.error is not None):
                    yield chunk
