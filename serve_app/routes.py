"""The HTTP surface: a FastAPI app over a `Handler`. Routes only parse; the handler decides.

Caption and VQA take either a multipart upload (`image` file part plus form fields) or a JSON body
with a base64 image, so they read the request themselves (one pydantic model validates both) and
declare both bodies in the OpenAPI schema. The chat route uses FastAPI's own body validation.
Two ASGI middlewares run before any route: the API key, then the body-size limit.
"""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import StreamingResponse
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException

from serve_app.errors import ApiError, install_error_handlers
from serve_app.handler import Handler
from serve_app.schemas import (
    CaptionRequest, CaptionResponse, ChatCompletion, ChatCompletionRequest, ErrorResponse, Health, ModelList,
    VQARequest, VQAResponse,
)

HEALTH_PATH = "/health"


def _route_path(scope) -> str:
    """The path inside this app (Serve mounts an application under its route prefix)."""
    path, root = scope["path"], scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root):] or "/"
    return path


class ApiKeyMiddleware:
    """`Authorization: Bearer <key>` on every route but the health route (docs and schema included)."""

    def __init__(self, app, api_key: str):
        self.app, self.key = app, api_key.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and _route_path(scope) != HEALTH_PATH:
            scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self.key):
                error = ApiError(401, "invalid_api_key", "a valid API key is required: Authorization: Bearer <key>",
                                 headers={"WWW-Authenticate": "Bearer"})
                await error.response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` before they are held in memory: by Content-Length up front,
    and by counting while reading (a chunked upload declares no length)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _too_large(self) -> HTTPException:
        # an HTTPException, not an ApiError: FastAPI passes it through its body parsing untouched
        return HTTPException(413, f"request body exceeds {self.max_bytes} bytes")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            error = self._too_large()
            await ApiError(413, "request_too_large", error.detail).response()(scope, receive, send)
            return
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, limited_receive, send)


async def parse_image_request(request: Request, model: type[CaptionRequest], max_files: int) -> CaptionRequest:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        return model.model_validate_json(await request.body())
    if media_type == "multipart/form-data":
        try:
            form = await request.form(max_files=max_files, max_fields=16)
        except HTTPException as error:
            raise ApiError(400, "invalid_multipart", str(error.detail)) from None
        fields = {}
        for key, value in form.multi_items():
            if key in fields:
                raise ApiError(400, "duplicate_field", f"field {key!r} is given more than once", key)
            fields[key] = await value.read() if isinstance(value, UploadFile) else value
        return model.model_validate(fields)
    raise ApiError(415, "unsupported_media_type",
                   f"content type {media_type or '(none)'!r}: send multipart/form-data or application/json")


def require_json(request: Request) -> None:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise ApiError(415, "unsupported_media_type", f"content type {media_type or '(none)'!r}: send application/json")


def _both_bodies(model: type[CaptionRequest]) -> dict:
    """OpenAPI requestBody for a route reading JSON or multipart itself."""
    schema = model.model_json_schema()
    form = {**schema, "properties": {**schema["properties"], "image": {"type": "string", "format": "binary"}}}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema},
                                                          "multipart/form-data": {"schema": form}}}}


def make_app(handler: Handler, api_key: str | None = None) -> FastAPI:
    app = FastAPI(title="RLHF-V grounded captions and VQA", version="1",
                  description="Captions, visual question answering and OpenAI-compatible chat from the aligned model.")
    install_error_handlers(app)
    errors = {status: {"model": ErrorResponse} for status in (400, 401, 404, 413, 415, 429, 503)}
    v1 = APIRouter(prefix="/v1", responses=errors)
    max_files = handler.limits.max_images

    @app.get(HEALTH_PATH, response_model=Health)
    async def health() -> Health:
        return handler.health()

    @v1.get("/models", response_model=ModelList)
    async def models() -> ModelList:
        return handler.models()

    @v1.post("/caption", response_model=CaptionResponse, openapi_extra=_both_bodies(CaptionRequest))
    async def caption(request: Request) -> CaptionResponse:
        return await handler.caption(await parse_image_request(request, CaptionRequest, max_files))

    @v1.post("/vqa", response_model=VQAResponse, openapi_extra=_both_bodies(VQARequest))
    async def vqa(request: Request) -> VQAResponse:
        return await handler.vqa(await parse_image_request(request, VQARequest, max_files))

    @v1.post("/chat/completions", response_model=ChatCompletion, dependencies=[Depends(require_json)],
             responses={200: {"content": {"text/event-stream": {}}, "description": "JSON, or SSE with stream: true"}})
    async def chat_completions(body: ChatCompletionRequest):
        result = await handler.chat(body)
        if isinstance(result, ChatCompletion):
            return result
        return StreamingResponse(result, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    app.include_router(v1)
    app.add_middleware(BodyLimitMiddleware, max_bytes=handler.limits.max_request_bytes)
    if api_key:
        app.add_middleware(ApiKeyMiddleware, api_key=api_key)  # added last: runs first
    return app
