"""HTTP routes: thin handlers that validate, call the repository and shape the answer."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pymongo.errors import PyMongoError

from apiserver.cursor import InvalidCursorError, decode_cursor, encode_cursor
from apiserver.errors import ApiError, error_response
from apiserver.guards import key_matches
from apiserver.metrics import CONTENT_TYPE_LATEST
from apiserver.models import (
    DEFAULT_PAGE,
    MAX_PAGE,
    BatchIn,
    BatchResult,
    ErrorBody,
    Health,
    Page,
    Record,
    RecordId,
    RecordIn,
    utc_now_ms,
)
from apiserver.repository import RecordRepository
from apiserver.state import state_of

log = logging.getLogger("apiserver.routes")

_api_key_header = APIKeyHeader(name="x-api-key", auto_error=False)


def require_api_key(
    request: Request, presented: Annotated[str | None, Security(_api_key_header)]
) -> None:
    """Checked by ApiKeyGuard before routing; checked again here so the route is safe alone
    and so OpenAPI documents the scheme."""
    expected = state_of(request).settings.api_key.get_secret_value().encode()
    if not key_matches(expected, None if presented is None else presented.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong x-api-key")


def repository(request: Request) -> RecordRepository:
    return state_of(request).repository


Repo = Annotated[RecordRepository, Depends(repository)]

_errors: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in {
        400: "Malformed JSON or an invalid cursor",
        401: "Missing or wrong x-api-key",
        413: "Body over 1 MiB",
        415: "Content type is not application/json",
        422: "Body or query fails validation",
        503: "MongoDB unreachable or failing",
    }.items()
}


async def insert(body: RecordIn, repo: Repo) -> Record:
    """Creates the record or updates its score; returns the stored record."""
    return await repo.upsert(body, utc_now_ms())


async def insert_batch(body: BatchIn, repo: Repo) -> BatchResult:
    """One unordered bulk write. Ids must be distinct within a batch (else 422, nothing
    written); each record's result says ``inserted``, ``updated`` or ``failed``."""
    repeated = sorted(rid for rid, n in Counter(r.id for r in body.records).items() if n > 1)
    if repeated:
        shown = ", ".join(repr(rid) for rid in repeated[:10])
        raise ApiError(422, "duplicate_ids", f"ids repeated within the batch: {shown}")
    results = await repo.upsert_many(body.records, utc_now_ms())
    counts = Counter(item.status for item in results)
    return BatchResult(
        inserted=counts["inserted"],
        updated=counts["updated"],
        failed=counts["failed"],
        results=results,
    )


async def read(
    repo: Repo,
    record_id: Annotated[
        RecordId | None, Query(alias="id", description="Only the record with this id")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = DEFAULT_PAGE,
    cursor: Annotated[
        str | None, Query(description="next_cursor of the previous page", max_length=1400)
    ] = None,
) -> Page:
    """Records in ascending id order. With ``id``, the page holds that record or nothing."""
    if record_id is not None:
        found = await repo.get(record_id)
        return Page(items=[] if found is None else [found], next_cursor=None)
    try:
        after = None if cursor is None else decode_cursor(cursor)
    except InvalidCursorError:
        raise ApiError(400, "invalid_cursor", "cursor is not one this service issued") from None
    items, more = await repo.page(after, limit)
    return Page(items=items, next_cursor=encode_cursor(items[-1].id) if more else None)


async def healthz() -> Health:
    return Health(status="ok")


async def readyz(request: Request, repo: Repo) -> Health | JSONResponse:
    """200 when MongoDB answers a ping within a third of APISERVER_MONGODB_TIMEOUT_MS."""
    try:
        await repo.ping()
    except PyMongoError as exc:
        seconds = state_of(request).settings.ping_timeout_s
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
    auth = [Depends(require_api_key)]
    add = app.add_api_route
    add(
        "/internal-insert",
        insert,
        methods=["POST"],
        response_model=Record,
        summary="Upsert one record by id",
        dependencies=auth,
        responses=_errors,
    )
    add(
        "/internal-insert/batch",
        insert_batch,
        methods=["POST"],
        response_model=BatchResult,
        summary="Upsert up to 1000 records",
        dependencies=auth,
        responses=_errors,
    )
    add(
        "/internal-read",
        read,
        methods=["GET"],
        response_model=Page,
        summary="Read records, one page at a time",
        dependencies=auth,
        responses=_errors,
    )
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
