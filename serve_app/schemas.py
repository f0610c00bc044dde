"""Request and response bodies. The chat models follow the OpenAI Chat Completions API closely enough
for the official `openai` client; unknown request fields are refused (a silently ignored `stop` or
`seed` would be a worse surprise than a 400)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_data_uri(value: str) -> bytes:
    """`data:<media type>;base64,<data>` -> bytes. The declared media type is not trusted: the
    image decoder identifies the format from the bytes."""
    header, sep, data = value.partition(",")
    if not (header.startswith("data:") and sep and header.endswith(";base64")):
        raise ValueError("a data URI must look like data:image/png;base64,<data>")
    return decode_base64(data)


def decode_base64(value: str) -> bytes:
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("image is not valid base64") from None


def _image_bytes(value):
    """Raw bytes (a multipart upload), or a base64 string / data URI (JSON)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return parse_data_uri(value) if value.startswith("data:") else decode_base64(value)
    raise ValueError("image must be a base64 string, a data: URI, or a file upload")


ImageBytes = Annotated[bytes, BeforeValidator(_image_bytes), WithJsonSchema(
    {"type": "string", "contentEncoding": "base64",
     "description": "the image: base64 or a data: URI in JSON; a file part in multipart/form-data"})]


class GenerationParams(Strict):
    max_new_tokens: int | None = Field(None, ge=1, description="default and cap: the server's limits")
    temperature: float = Field(0.0, ge=0, le=2, description="0: greedy")
    top_p: float = Field(1.0, gt=0, le=1)


class CaptionRequest(GenerationParams):
    image: ImageBytes


class VQARequest(CaptionRequest):
    question: str = Field(min_length=1)


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Timing(BaseModel):
    total_ms: float  # at the ingress, request parsed -> response ready
    queue_ms: float  # waiting for a batch (and the trip to the replica)
    generation_ms: float  # in the batch until this request's last token
    batch_size: int  # requests in the batch that computed this one


class CaptionResponse(BaseModel):
    id: str
    object: Literal["caption"] = "caption"
    model: str
    caption: str
    finish_reason: Literal["stop", "length"]
    usage: Usage
    timing: Timing


class VQAResponse(BaseModel):
    id: str
    object: Literal["vqa.answer"] = "vqa.answer"
    model: str
    question: str
    answer: str
    finish_reason: Literal["stop", "length"]
    usage: Usage
    timing: Timing


# --- OpenAI-compatible chat -------------------------------------------------------------------

class ImageURL(Strict):
    url: str = Field(description="a data: URI; http(s) only under the server's allowed prefixes")
    detail: Literal["auto", "low", "high"] | None = None


class TextPart(Strict):
    type: Literal["text"]
    text: str


class ImagePart(Strict):
    type: Literal["image_url"]
    image_url: ImageURL


ContentPart = Annotated[TextPart | ImagePart, Field(discriminator="type")]


class ChatMessage(Strict):
    role: Literal["system", "user", "assistant"]
    content: str | list[ContentPart]
    name: str | None = None


class StreamOptions(Strict):
    include_usage: bool = False


class ChatCompletionRequest(Strict):
    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="default 0 (greedy)")
    top_p: float | None = Field(None, gt=0, le=1)
    n: int | None = Field(None, ge=1, le=1, description="one choice per request")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "rlhfv-ray"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorBody(BaseModel):
    type: str  # invalid_request_error, authentication_error, overloaded_error, internal_error
    code: str | None = None  # machine-readable, e.g. too_many_pixels
    message: str
    param: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    model: str
