"""HTTP routes: thin endpoints that validate, call the repository and shape the answer.

The three record routes are :class:`apiserver.lean.LeanRoute`: documented from the endpoint
functions below, served by the handlers next to them (parse, call the endpoint, encode).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Query, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pymongo.errors import PyMongoError

from apiserver import encode
from apiserver.cursor import InvalidCursorError, decode_cursor, encode_cursor
from apiserver.errors import ApiError, error_response
from apiserver.guards import key_matches
from apiserver.lean import JsonBytes, LeanRoute, parse_body, parse_query
from apiserver.metrics import CONTENT_TYPE_LATEST
from apiserver.models import (
    BatchIn,
    BatchResult,
    ErrorBody,
    Health,
    ReadQuery,
    Record,
    RecordIn,
    utc_now_ms,
)
from apiserver.openapi import install_openapi
from apiserver.repository import BatchItem, Document, RecordRepository
from apiserver.state import AppState, state_of

log = logging.getLogger("apiserver.routes")

# Documents the scheme; the key is checked by ApiKeyGuard and again by each record handler.
_security = Security(APIKeyHeader(name="x-api-key", auto_error=False))
_errors: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Malformed JSON or an invalid cursor",
        401: "Missing or wrong x-api-key",
        413: "Body over 1 MiB",
        415: "Content type is not application/json",
        422: "Body or query fails validation",
        503: "MongoDB unreachable or failing; retry",
        504: "MongoDB did not finish within APISERVER_MONGODB_MAX_TIME_MS and stopped",
    }.items()
}


def repository(request: Request) -> RecordRepository:
    return state_of(request).repository


# In the endpoints' signatures for the OpenAPI document; the handlers pass the repository.
Repo = Annotated[RecordRepository, Depends(repository)]


def _authorized(request: Request) -> tuple[AppState, RecordRepository]:
    """ApiKeyGuard checked the key before routing; checked again here so that a route is
    safe alone. The state and the repository of the app, for the handler."""
    state = state_of(request)
    presented = request.headers.get("x-api-key")
    if not key_matches(state.api_key, None if presented is None else presented.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong x-api-key")
    return state, state.repository


async def insert(body: RecordIn, repo: Repo) -> Document:
    """Creates the record or updates its score; returns the stored record."""
    return await repo.upsert(body, utc_now_ms())


async def _insert(request: Request) -> Response:
    _, repo = _authorized(request)
    body = parse_body(RecordIn, await request.body())
    return JsonBytes(encode.record(await insert(body, repo)))


async def insert_batch(body: BatchIn, repo: Repo) -> dict[str, Any]:
    """One unordered bulk write. Ids must be distinct within a batch (else 422, nothing
    written); each record's result says ``inserted``, ``updated`` or ``failed``."""
    repeated = sorted(rid for rid, n in Counter(r.id for r in body.records).items() if n > 1)
    if repeated:
        shown = ", ".join(repr(rid) for rid in repeated[:10])
        raise ApiError(422, "duplicate_ids", f"ids repeated within the batch: {shown}")
    results: list[BatchItem] = await repo.upsert_many(body.records, utc_now_ms())
    counts = Counter(item["status"] for item in results)
    return {
        "inserted": counts["inserted"],
        "updated": counts["updated"],
        "failed": counts["failed"],
        "results": results,
    }


async def _insert_batch(request: Request) -> Response:
    _, repo = _authorized(request)
    body = parse_body(BatchIn, await request.body())
    return JsonBytes(encode.dumps(await insert_batch(body, repo)))


async def read(
    query: Annotated[ReadQuery, Query()], repo: Repo
) -> tuple[list[Document], str | None]:
    """Records in ascending id order, as a JSON array. When more follow, the header
    ``Link: <?limit=N&cursor=C>; rel="next"`` (RFC 8288) points at the next page, relative to
    the URL that was called (resolve it against that URL). With ``id``, the array holds that
    record or nothing."""
    if query.id is not None:
        found = await repo.get(query.id)
        return ([] if found is None else [found]), None
    try:
        after = None if query.cursor is None else decode_cursor(query.cursor)
    except InvalidCursorError:
        raise ApiError(400, "invalid_cursor", "cursor is not one this service issued") from None
    docs, more = await repo.page(after, query.limit)
    return docs, encode_cursor(docs[-1]["_id"]) if more else None


async def _read(request: Request) -> Response:
    _, repo = _authorized(request)
    query = parse_query(ReadQuery, dict(request.query_params))
    docs, cursor = await read(query, repo)
    response = JsonBytes(encode.records(docs))
    if cursor is not None:
        # A query-only reference keeps the path the client used (the Gateway's public one).
        target = urlencode({"limit": query.limit, "cursor": cursor})
        response.headers["link"] = f'<?{target}>; rel="next"'
    return response


async def healthz() -> Health:
    return Health(status="ok")


async def readyz(request: Request) -> Health | JSONResponse:
    """200 when MongoDB answers a ping within a third of APISERVER_MONGODB_TIMEOUT_MS."""
    state = state_of(request)
    try:
        await state.repository.ping()
    except PyMongoError as exc:
        seconds = state.settings.ping_timeout_s
        log.warning("not ready", extra={"error_type": type(exc).__name__, "error": str(exc)})
        return error_response(
            503,
            "database_unavailable",
            f"MongoDB did not answer a ping within {seconds * 1000:.0f} ms",
        )
    return Health(status="ok")


async def metrics(request: Request) -> Response:
    return Response(state_of(request).metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def add_routes(app: FastAPI) -> None:
    """Routes are added to the app itself (not through an included router), so the app's
    route list holds every template; ObserveMiddleware labels metrics with them."""
    auth: Any = {"dependencies": [_security], "responses": _errors}
    lean = app.router.routes.append
    lean(
        LeanRoute(
            "/internal-insert",
            insert,
            handler=_insert,
            methods=["POST"],
            response_model=Record,
            summary="Upsert one record by id",
            **auth,
        )
    )
    lean(
        LeanRoute(
            "/internal-insert/batch",
            insert_batch,
            handler=_insert_batch,
            methods=["POST"],
            response_model=BatchResult,
            summary="Upsert up to 1000 records",
            **auth,
        )
    )
    lean(
        LeanRoute(
            "/internal-read",
            read,
            handler=_read,
            methods=["GET"],
            response_model=list[Record],
            summary="Read records, one page at a time",
            dependencies=[_security],
            responses={
                **_errors,
                200: {
                    "description": "Records in ascending id order (a JSON array)",
                    "headers": {
                        "Link": {
                            "description": 'When more follow: `<?limit=N&cursor=C>; rel="next"` '
                            "(RFC 8288), relative to the URL called",
                            "schema": {"type": "string"},
                        }
                    },
                },
            },
        )
    )
    add = app.add_api_route
    add("/healthz", healthz, methods=["GET"], response_model=Health, summary="The process is alive")
    add(
        "/readyz",
        readyz,
        methods=["GET"],
        response_model=Health,
        summary="MongoDB answers a ping",
        responses={503: {"model": ErrorBody, "description": "MongoDB unreachable"}},
    )
    add(
        "/metrics",
        metrics,
        methods=["GET"],
        response_class=Response,
        summary="Prometheus metrics (text exposition format)",
    )
    install_openapi(app)
