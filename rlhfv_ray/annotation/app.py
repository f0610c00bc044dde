"""`rlhfv annotate`: the correction page and its JSON API, a small Starlette app on uvicorn.

Its own app, not a route of the Ray Serve app: it holds state on one disk (SQLite wants one
process writing), serves a handful of people rather than traffic that needs replicas, and must
stay up while model replicas come and go; it needs no model and no Ray.

Annotators log in with the token the config gives them (an HttpOnly cookie afterwards, or an
`Authorization: Bearer` header). Model-written text reaches the page only as JSON that the page
puts in with `textContent`, and the Content-Security-Policy allows no inline script.
"""

from __future__ import annotations

import hmac
import logging
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from rlhfv_ray.annotation.edits import Edit, EditError, apply_edits, diff, words
from rlhfv_ray.annotation.store import NotYours, Store
from rlhfv_ray.config import StrictModel
from rlhfv_ray.data.sources import Paths, expand_paths, read_local_rows

logger = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "page"
COOKIE = "rlhfv_annotator"
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self'; script-src 'self'; style-src 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class AnnotateConfig(StrictModel):
    db: str = "runs/annotate/annotations.db"
    tasks: Paths = []  # awaiting.parquet of `collect-feedback --annotator export`, added at start
    task_set: str = "default"  # the name the tasks above are added under
    annotators: dict[str, str] = Field(min_length=1)  # name -> login token
    overlap: int = Field(1, ge=1)  # annotators per task (more than 1 measures agreement)
    host: str = "127.0.0.1"
    port: int = Field(8100, ge=0, le=65535)

    @field_validator("annotators")
    @classmethod
    def _strong_tokens(cls, value: dict[str, str]) -> dict[str, str]:
        weak = [name for name, token in value.items() if len(token) < 16]
        if weak:
            raise ValueError(f"tokens of {weak} are shorter than 16 characters")
        if len(set(value.values())) != len(value):
            raise ValueError("two annotators share a token")
        return value


class BadRequest(ValueError):
    """A request body that does not say what the endpoint needs (answered 422)."""


class Submission(BaseModel):
    model_config = ConfigDict(extra="forbid")
    verdict: str = Field(pattern="^(corrected|correct)$")
    edits: list[Edit] = Field(default_factory=list, max_length=200)


class Draft(BaseModel):
    model_config = ConfigDict(extra="forbid")
    edits: list[Edit] = Field(default_factory=list, max_length=200)


class Skip(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(min_length=1, max_length=500)


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=SECURITY_HEADERS)


def ok(payload: dict) -> JSONResponse:
    return JSONResponse(payload, headers=SECURITY_HEADERS)


def build_app(config: AnnotateConfig) -> Starlette:
    store = Store(config.db)
    if config.tasks:
        records, errors = read_local_rows(expand_paths(config.tasks))
        if errors:
            raise ValueError(f"{config.tasks}: {errors[0]}")
        logger.info("annotate: %d new tasks in %s", store.add_tasks(config.task_set, records), config.db)

    def annotator(request: Request) -> str | None:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else request.cookies.get(COOKIE, "")
        for name, expected in config.annotators.items():
            if token and hmac.compare_digest(token.encode(), expected.encode()):
                return name
        return None

    async def body(request: Request, model: type[BaseModel]):
        try:
            return model.model_validate_json(await request.body())
        except ValidationError as exc:
            raise BadRequest(exc.errors(include_url=False, include_context=False)[0]["msg"]) from None

    def endpoint(handler, needs_task: bool = False):
        """Auth, and the JSON errors every bad request gets."""
        async def wrapped(request: Request) -> Response:
            name = annotator(request)
            if name is None:
                return error(401, "not_logged_in", "log in with your annotator token")
            try:
                if needs_task:
                    task = store.task_for(request.path_params["task_id"], name)
                    return await handler(request, name, task)
                return await handler(request, name)
            except NotYours as exc:
                return error(409, "not_your_task", str(exc))
            except (BadRequest, EditError) as exc:
                return error(422, "invalid", str(exc))
        return wrapped

    async def page(request: Request) -> Response:
        return FileResponse(PAGE / "index.html", headers=SECURITY_HEADERS)

    async def login(request: Request) -> Response:
        try:
            token = str((await request.json()).get("token", ""))
        except (ValueError, AttributeError):
            return error(422, "invalid", "send {\"token\": ...}")
        name = next((n for n, t in config.annotators.items() if hmac.compare_digest(token.encode(), t.encode())), None)
        if name is None:
            return error(401, "bad_token", "no annotator has this token")
        response = ok({"annotator": name})
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict")
        return response

    async def next_task(request, name):
        task = store.next_task(name, config.overlap)
        if task is None:
            return ok({"annotator": name, "task": None, "progress": store.progress(name)})
        return ok({"annotator": name, "task": {"id": task.id, "task_set": task.task_set, "question": task.question,
                                               "words": words(task.answer)},
                   "draft": store.draft(task.id, name), "progress": store.progress(name)})

    async def image(request, name, task):
        data = store.image(task)
        kind = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/jpeg"
        return Response(data, media_type=kind, headers=SECURITY_HEADERS)

    async def save_draft(request, name, task):
        store.save_draft(task.id, name, (await body(request, Draft)).model_dump())
        return ok({"saved": True})

    async def preview(request, name, task):
        edits = (await body(request, Draft)).edits
        return ok({"chosen": apply_edits(task.answer, edits),
                   "diff": [{"kind": p.kind, "text": p.text} for p in diff(task.answer, edits)]})

    async def submit(request, name, task):
        submission = await body(request, Submission)
        if submission.verdict == "correct" and submission.edits:
            raise BadRequest("an answer marked correct has no edits")
        if submission.verdict == "corrected" and not submission.edits:
            raise BadRequest("a corrected answer needs at least one edit")
        chosen = apply_edits(task.answer, submission.edits)
        store.submit(task.id, name, {"verdict": submission.verdict, "chosen": chosen,
                                     "edits": [e.model_dump() for e in submission.edits]})
        return ok({"saved": True, "chosen": chosen})  # after the COMMIT: durable

    async def skip(request, name, task):
        store.skip(task.id, name, (await body(request, Skip)).reason)
        return ok({"skipped": True})

    async def progress(request, name):
        return ok(store.progress(name))

    return Starlette(routes=[
        Route("/", page),
        Route("/api/login", login, methods=["POST"]),
        Route("/api/task", endpoint(next_task)),
        Route("/api/progress", endpoint(progress)),
        Route("/api/tasks/{task_id}/image", endpoint(image, needs_task=True)),
        Route("/api/tasks/{task_id}/draft", endpoint(save_draft, needs_task=True), methods=["PUT"]),
        Route("/api/tasks/{task_id}/preview", endpoint(preview, needs_task=True), methods=["POST"]),
        Route("/api/tasks/{task_id}/submit", endpoint(submit, needs_task=True), methods=["POST"]),
        Route("/api/tasks/{task_id}/skip", endpoint(skip, needs_task=True), methods=["POST"]),
        Mount("/static", StaticFiles(directory=PAGE), name="static"),
    ])


def serve(config: AnnotateConfig) -> None:
    import uvicorn

    logger.info("annotate: http://%s:%d (database %s)", config.host, config.port, config.db)
    uvicorn.run(build_app(config), host=config.host, port=config.port, log_level="warning")
