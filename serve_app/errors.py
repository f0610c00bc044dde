"""One error shape for every failure, OpenAI-style: `{"error": {"type", "code", "message", "param"}}`.

Bad input is a 4xx whose `code` names the problem; only a fault of the server itself is a 5xx.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from serve_app.schemas import ErrorBody, ErrorResponse

_TYPES = {401: "authentication_error", 429: "rate_limit_error", 503: "overloaded_error"}


def error_type(status: int) -> str:
    return _TYPES.get(status) or ("invalid_request_error" if status < 500 else "internal_error")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.param = status, code, message, param
        self.headers = headers or {}

    def body(self) -> ErrorResponse:
        return ErrorResponse(error=ErrorBody(type=error_type(self.status), code=self.code, message=self.message,
                                             param=self.param))

    def response(self) -> JSONResponse:
        return JSONResponse(self.body().model_dump(), status_code=self.status, headers=self.headers)


def describe_validation(errors: list[dict]) -> tuple[str, str | None]:
    """pydantic/FastAPI errors -> (message, param): the first problems, each with its field."""
    parts, param = [], None
    for err in errors:
        if err.get("type") == "json_invalid":  # the body is not JSON at all: nothing else matters
            return f"malformed JSON body: {(err.get('ctx') or {}).get('error', err['msg'])}", None
    for err in errors[:3]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc)
        param = param or where or None
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    return "; ".join(parts) + more, param


def validation_error(errors: list[dict]) -> ApiError:
    codes = {err.get("type") for err in errors}
    code = "invalid_json" if "json_invalid" in codes else "missing_field" if codes == {"missing"} else "invalid_value"
    message, param = describe_validation(errors)
    return ApiError(400, code, message, param)


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(_: Request, exc: ApiError):
        return exc.response()

    async def request_validation(_: Request, exc: RequestValidationError):
        return validation_error(list(exc.errors())).response()

    async def pydantic_validation(_: Request, exc: ValidationError):
        return validation_error(exc.errors()).response()

    async def http_error(_: Request, exc: HTTPException):
        codes = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        code = codes.get(exc.status_code, "http_error")
        return ApiError(exc.status_code, code, str(exc.detail), headers=dict(exc.headers or {})).response()

    async def unexpected(_: Request, exc: Exception):
        # a bug or a broken replica: say so without leaking internals; Serve logs the traceback
        return ApiError(500, "internal_error", f"internal error ({type(exc).__name__})").response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(ValidationError, pydantic_validation)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
