"""Uniform JSON error answers: ``{"error": code, "message": text, "details": [...]?}``.

No answer carries a stack trace; unexpected failures are logged here and answered 500.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pymongo.errors import ConnectionFailure, DuplicateKeyError, ExecutionTimeout, PyMongoError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Send

from apiserver.models import ErrorBody, ErrorDetail

log = logging.getLogger("apiserver.errors")

_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "content_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "service_unavailable",
    504: "database_timeout",
}


class ApiError(Exception):
    """An error answer raised from a route or dependency."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_body(code: str, message: str, details: list[ErrorDetail] | None = None) -> bytes:
    body = ErrorBody(error=code, message=message, details=details)
    return body.model_dump_json(exclude_none=True).encode()


def error_response(
    status: int, code: str, message: str, details: list[ErrorDetail] | None = None
) -> JSONResponse:
    body = ErrorBody(error=code, message=message, details=details)
    return JSONResponse(body.model_dump(mode="json", exclude_none=True), status_code=status)


async def send_error(send: Send, status: int, code: str, message: str) -> None:
    """Answer from a raw ASGI middleware, before any routing happened."""
    body = error_body(code, message)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _details(errors: Sequence[Any]) -> list[ErrorDetail]:
    # Input values are not echoed back: they may be large or sensitive.
    return [
        ErrorDetail(
            loc=[part if isinstance(part, int) else str(part) for part in err.get("loc", ())],
            msg=str(err.get("msg", "")),
            type=str(err.get("type", "")),
        )
        for err in errors
    ]


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    for err in errors:
        if err.get("type") == "json_invalid":
            reason = (err.get("ctx") or {}).get("error", "invalid JSON")
            where = err["loc"][-1] if err.get("loc") else "?"
            return error_response(
                400, "malformed_json", f"request body is not valid JSON: {reason} at {where}"
            )
    return error_response(422, "validation_error", "request is invalid", _details(errors))


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES.get(exc.status_code, "error")
    response = error_response(exc.status_code, code, str(exc.detail))
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _api(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc.status, exc.code, exc.message)


async def _mongo(request: Request, exc: Exception) -> JSONResponse:
    log.warning(
        "database error",
        extra={"path": request.url.path, "error_type": type(exc).__name__, "error": str(exc)},
    )
    if isinstance(exc, ExecutionTimeout):
        # 504, not 503: a gateway retries a 503 (Istio does by default), and a command that
        # overran its deadline once would overrun it again, at two or three times the cost.
        milliseconds = request.app.state.stack.settings.max_time_ms
        return error_response(
            504,
            "database_timeout",
            f"the database stopped the command at its {milliseconds} ms deadline "
            "(APISERVER_MONGODB_MAX_TIME_MS)",
        )
    if isinstance(exc, ConnectionFailure):
        return error_response(503, "database_unavailable", "the database is unreachable; retry")
    if isinstance(exc, DuplicateKeyError):
        return error_response(503, "write_conflict", "a concurrent write conflicted; retry")
    return error_response(503, "database_error", "the database failed the request; retry")


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return error_response(500, "internal_error", "internal error")


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(ApiError, _api)
    app.add_exception_handler(PyMongoError, _mongo)
    app.add_exception_handler(Exception, _unexpected)
