"""Routes that FastAPI documents but does not run.

FastAPI builds each operation of the OpenAPI document from the endpoint's signature and
``response_model`` as usual; requests, though, go to the route's ``handler(request)``, which
parses with the same pydantic models, calls the endpoint and returns the body as bytes. That
skips what FastAPI spends on every request: solving dependencies (sync ones in a thread),
parsing JSON into dicts before validating them, validating the endpoint's return value again
against the response model and encoding it generically, two exit stacks. The answers do not
change: the same models validate, and errors raise the exceptions that
:mod:`apiserver.errors` shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import request_response

from apiserver.errors import ApiError

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
Model = TypeVar("Model", bound=BaseModel)


class LeanRoute(APIRoute):
    """An APIRoute served by ``handler`` (documented from ``endpoint``)."""

    def __init__(
        self, path: str, endpoint: Callable[..., Any], *, handler: Handler, **kwargs: Any
    ) -> None:
        self.handler = handler
        super().__init__(path, endpoint, **kwargs)
        self.app = request_response(handler)  # Starlette's: exception handlers, no exit stacks

    def get_route_handler(self) -> Handler:
        return self.handler


class JsonBytes(Response):
    """A body already encoded as JSON."""

    media_type = "application/json"


def _located(errors: list[Any], where: str) -> RequestValidationError:
    return RequestValidationError([{**error, "loc": (where, *error["loc"])} for error in errors])


def parse_body(model: type[Model], body: bytes) -> Model:
    """The request body as ``model``: 400 for bad JSON, 422 naming the field otherwise."""
    if not body:
        missing = {"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}
        raise RequestValidationError([missing])
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        for error in errors:
            if error["type"] == "json_invalid":
                reason = (error.get("ctx") or {}).get("error", "invalid JSON")
                raise ApiError(
                    400, "malformed_json", f"request body is not valid JSON: {reason}"
                ) from None
        raise _located(errors, "body") from None


def parse_query(model: type[Model], params: Mapping[str, str]) -> Model:
    """The query string as ``model``: 422 naming the parameter."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise _located(exc.errors(include_url=False, include_input=False), "query") from None
