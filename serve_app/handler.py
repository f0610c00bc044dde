"""What each endpoint does, apart from HTTP: check the request against the server's limits, turn it
into a `GenerationJob`, ask the model, shape the answer. Routes (`serve_app.routes`) only parse the
HTTP request into the pydantic models this takes.

Every refusal is an `ApiError` naming the problem (400/404/413), raised before the model is asked
whenever the ingress can tell; the model replica adds the checks that need its tokenizer.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
import urllib.error
import urllib.request
import uuid
from typing import AsyncIterator
from urllib.parse import unquote, urlsplit

from rlhfv_ray.images import ImageDecodeError, decode_image
from rlhfv_ray.model.generate import GenerationSettings
from serve_app.client import ModelClient
from serve_app.config import ServeArgs
from serve_app.engine import Chunk, GenerationJob
from serve_app.errors import ApiError
from serve_app.schemas import (
    AssistantMessage, CaptionRequest, CaptionResponse, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    Choice, ChunkChoice, Delta, Health, ModelCard, ModelList, TextPart, Timing, Usage, VQARequest, VQAResponse,
    parse_data_uri,
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def url_allowed(url: str, prefixes: list[str]) -> bool:
    """Whether an http(s) URL lies under one of `prefixes`, compared as parsed parts (scheme, host,
    port, path), never as raw strings: `https://good.example@evil.example/` or
    `https://good.example.evil.example/` must not pass for `https://good.example/`."""
    try:
        target = urlsplit(url)
        port = target.port or _DEFAULT_PORTS.get(target.scheme)
    except ValueError:  # e.g. a port that is not a number
        return False
    if target.scheme not in _DEFAULT_PORTS or target.username or target.password or not target.hostname:
        return False
    path = unquote(target.path) or "/"
    if ".." in path.split("/"):
        return False
    for prefix in prefixes:
        allowed = urlsplit(prefix)
        if ((target.scheme, target.hostname, port)
                == (allowed.scheme, allowed.hostname, allowed.port or _DEFAULT_PORTS.get(allowed.scheme))
                and posixpath.normpath(path).startswith(allowed.path or "/")):
            return True
    return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a redirect could leave the allow-list: it is an error instead


def fetch_url(url: str, max_bytes: int, timeout_s: float, param: str) -> bytes:
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(urllib.request.Request(url, headers={"User-Agent": "rlhfv-serve"}), timeout=timeout_s) as r:
            data = r.read(max_bytes + 1)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise ApiError(400, "image_fetch_failed", f"could not fetch {url}: {error}", param) from None
    if len(data) > max_bytes:
        raise ApiError(413, "image_too_large", f"image at {url} exceeds {max_bytes} bytes", param)
    return data


def _usage(chunk: Chunk) -> Usage:
    f = chunk.final
    return Usage(prompt_tokens=f.prompt_tokens, completion_tokens=f.completion_tokens,
                 total_tokens=f.prompt_tokens + f.completion_tokens)


class Handler:
    def __init__(self, args: ServeArgs, client: ModelClient):
        self.args = args
        self.limits = args.limits
        self.client = client
        self.model_name = args.served_name
        self.created = int(time.time())
        self.formats = frozenset(self.limits.image_formats)

    def health(self) -> Health:
        return Health(model=self.model_name)

    def models(self) -> ModelList:
        return ModelList(data=[ModelCard(id=self.model_name, created=self.created)])

    # --- checks --------------------------------------------------------------------------------

    async def check_image(self, data: bytes, param: str) -> bytes:
        if len(data) > self.limits.max_image_bytes:
            raise ApiError(413, "image_too_large",
                           f"image is {len(data)} bytes; the limit is {self.limits.max_image_bytes}", param)
        try:  # in a thread: decoding a large image must not stall the other requests of this ingress
            await asyncio.to_thread(decode_image, data, self.limits.max_pixels, self.formats)
        except ImageDecodeError as error:
            raise ApiError(400, error.reason, str(error), param) from None
        return data

    def settings(self, max_new_tokens: int | None, temperature: float | None, top_p: float | None,
                 tokens_param: str = "max_new_tokens") -> GenerationSettings:
        n = max_new_tokens or self.limits.default_max_new_tokens
        if n > self.limits.max_new_tokens:
            raise ApiError(400, "max_new_tokens_too_large",
                           f"{tokens_param} is {n}; this server's cap is {self.limits.max_new_tokens}", tokens_param)
        temperature = 0.0 if temperature is None else temperature
        if temperature > self.limits.max_temperature:
            raise ApiError(400, "temperature_too_high",
                           f"temperature is {temperature}; this server's cap is {self.limits.max_temperature}",
                           "temperature")
        return GenerationSettings(n, temperature, 1.0 if top_p is None else top_p)

    async def _run(self, job: GenerationJob) -> Chunk:
        chunk = await self.client.generate(job)
        if chunk.error is not None:
            e = chunk.error
            raise ApiError(e.status, e.code, e.message, e.param)
        return chunk

    def _timing(self, chunk: Chunk, started: float) -> Timing:
        f = chunk.final
        return Timing(total_ms=1000 * (time.perf_counter() - started), queue_ms=f.queue_ms,
                      generation_ms=f.generation_ms, batch_size=f.batch_size)

    # --- caption and VQA -----------------------------------------------------------------------

    async def caption(self, request: CaptionRequest) -> CaptionResponse:
        started = time.perf_counter()
        image = await self.check_image(request.image, "image")
        settings = self.settings(request.max_new_tokens, request.temperature, request.top_p)
        chunk = await self._run(self._single_image_job(image, self.args.caption_prompt, settings))
        return CaptionResponse(id=f"cap-{uuid.uuid4().hex[:24]}", model=self.model_name, caption=chunk.final.text,
                               finish_reason=chunk.final.finish_reason, usage=_usage(chunk),
                               timing=self._timing(chunk, started))

    async def vqa(self, request: VQARequest) -> VQAResponse:
        started = time.perf_counter()
        if len(request.question) > self.limits.max_question_chars:
            raise ApiError(400, "question_too_long", f"question is {len(request.question)} characters; the limit "
                           f"is {self.limits.max_question_chars}", "question")
        image = await self.check_image(request.image, "image")
        settings = self.settings(request.max_new_tokens, request.temperature, request.top_p)
        chunk = await self._run(self._single_image_job(image, request.question, settings))
        return VQAResponse(id=f"vqa-{uuid.uuid4().hex[:24]}", model=self.model_name, question=request.question,
                           answer=chunk.final.text, finish_reason=chunk.final.finish_reason, usage=_usage(chunk),
                           timing=self._timing(chunk, started))

    @staticmethod
    def _single_image_job(image: bytes, question: str, settings: GenerationSettings) -> GenerationJob:
        # the same conversation as rlhfv_ray.model.encoding.user_prompt: what the model was trained on
        messages = ({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]},)
        return GenerationJob((image,), messages, settings)

    # --- OpenAI chat completions ---------------------------------------------------------------

    async def _image_from_url(self, url: str, param: str) -> bytes:
        if url.startswith("data:"):
            try:
                data = parse_data_uri(url)
            except ValueError as error:
                raise ApiError(400, "invalid_image_url", str(error), param) from None
        elif url.split(":", 1)[0].lower() in _DEFAULT_PORTS:  # url_allowed parses it, safely
            if not url_allowed(url, self.args.allowed_image_url_prefixes):
                raise ApiError(400, "image_url_not_allowed", "this server fetches no image URL outside its allowed "
                               "prefixes; send the image inline as a data: URI", param)
            data = await asyncio.to_thread(fetch_url, url, self.limits.max_image_bytes,
                                           self.limits.url_fetch_timeout_s, param)
        else:
            raise ApiError(400, "invalid_image_url", "image_url must be a data: URI (or an allowed http(s) URL)", param)
        return await self.check_image(data, param)

    async def chat_job(self, request: ChatCompletionRequest) -> GenerationJob:
        if request.model != self.model_name:
            raise ApiError(404, "model_not_found", f"model {request.model!r} is not served here; "
                           f"this server serves {self.model_name!r}", "model")
        if len(request.messages) > self.limits.max_messages:
            raise ApiError(400, "too_many_messages", f"{len(request.messages)} messages; the limit is "
                           f"{self.limits.max_messages}", "messages")
        system, messages, urls, chars = [], [], [], 0
        for i, message in enumerate(request.messages):
            parts = message.content
            if isinstance(parts, str):
                parts = [TextPart(type="text", text=parts)]
            content = []
            for j, part in enumerate(parts):
                if isinstance(part, TextPart):
                    chars += len(part.text)
                    content.append({"type": "text", "text": part.text})
                elif message.role != "user":
                    raise ApiError(400, "misplaced_image", "images are accepted in user messages only",
                                   f"messages.{i}.content.{j}")
                else:
                    urls.append((part.image_url.url, f"messages.{i}.content.{j}.image_url"))
                    content.append({"type": "image"})
            if message.role == "system":
                system += [part["text"] for part in content]
            else:
                messages.append({"role": message.role, "content": content})
        if chars > self.limits.max_prompt_chars:
            raise ApiError(400, "prompt_too_long", f"the messages hold {chars} characters of text; the limit is "
                           f"{self.limits.max_prompt_chars}", "messages")
        if not messages or messages[-1]["role"] != "user":
            raise ApiError(400, "invalid_messages", "the last message must be a user message", "messages")
        if not urls:
            raise ApiError(400, "missing_image", "the conversation holds no image_url part; this model answers "
                           "about an image", "messages")
        if len(urls) > self.limits.max_images:
            raise ApiError(400, "too_many_images", f"{len(urls)} images; the limit is {self.limits.max_images}",
                           "messages")
        if system:  # LLaVA's chat template has no system role: its text opens the first user turn
            first_user = next(m for m in messages if m["role"] == "user")
            first_user["content"].insert(0, {"type": "text", "text": "\n".join(system) + "\n"})
        tokens_param = "max_completion_tokens" if request.max_completion_tokens else "max_tokens"
        settings = self.settings(request.max_completion_tokens or request.max_tokens, request.temperature,
                                 request.top_p, tokens_param)
        images = tuple([await self._image_from_url(url, param) for url, param in urls])  # last: may fetch
        return GenerationJob(images, tuple(messages), settings, stream=bool(request.stream))

    async def chat(self, request: ChatCompletionRequest) -> ChatCompletion | AsyncIterator[str]:
        """A ChatCompletion, or (stream: true) the server-sent events of its chunks."""
        job = await self.chat_job(request)
        if request.stream:
            return await self._chat_stream(request, job)
        chunk = await self._run(job)
        return ChatCompletion(id=f"chatcmpl-{uuid.uuid4().hex[:24]}", created=int(time.time()), model=self.model_name,
                              choices=[Choice(message=AssistantMessage(content=chunk.final.text),
                                              finish_reason=chunk.final.finish_reason)],
                              usage=_usage(chunk))

    async def _chat_stream(self, request: ChatCompletionRequest, job: GenerationJob) -> AsyncIterator[str]:
        stream = self.client.stream(job)
        # The first chunk is awaited before any byte is sent, so a refused request (overload, a
        # too-long prompt) still gets its 4xx/503 status instead of an error inside a 200 stream.
        try:
            first = await anext(stream)
        except StopAsyncIteration:
            raise RuntimeError("the model stream ended without a chunk") from None
        if first.error is not None:
            raise ApiError(first.error.status, first.error.code, first.error.message, first.error.param)
        include_usage = bool(request.stream_options and request.stream_options.include_usage)
        return self._sse(stream, first, f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), include_usage)

    async def _sse(self, stream: AsyncIterator[Chunk], chunk: Chunk, cid: str, created: int,
                   include_usage: bool) -> AsyncIterator[str]:
        def event(choices: list[ChunkChoice], usage: Usage | None = None) -> str:
            body = ChatCompletionChunk(id=cid, created=created, model=self.model_name, choices=choices, usage=usage)
            return f"data: {body.model_dump_json(exclude_none=True)}\n\n"

        yield event([ChunkChoice(delta=Delta(role="assistant", content=""))])
        try:
            while True:
                if chunk.error is not None:
                    raise ApiError(chunk.error.status, chunk.error.code, chunk.error.message, chunk.error.param)
                if chunk.text:
                    yield event([ChunkChoice(delta=Delta(content=chunk.text))])
                if chunk.final is not None:
                    yield event([ChunkChoice(delta=Delta(), finish_reason=chunk.final.finish_reason)])
                    if include_usage:
                        yield event([], _usage(chunk))
                    break
                chunk = await anext(stream)
        except ApiError as error:  # headers are sent: the error travels as an event, as OpenAI's do
            yield f"data: {error.body().model_dump_json()}\n\n"
            return
        except Exception as error:
            yield f"data: {ApiError(500, 'internal_error', type(error).__name__).body().model_dump_json()}\n\n"
            return
        yield "data: [DONE]\n\n"
