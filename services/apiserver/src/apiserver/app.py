"""The FastAPI application: middleware order, routes, lifespan (one MongoDB client)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from apiserver import __version__
from apiserver.access import AccessLog
from apiserver.direct import DirectRoutes
from apiserver.errors import install_handlers
from apiserver.guards import ApiKeyGuard, BodySizeLimit, JsonContentTypeGuard
from apiserver.heap import settle
from apiserver.lean import LeanRoute
from apiserver.logs import configure_logging
from apiserver.observe import ObserveMiddleware
from apiserver.paths import StripTrailingSlash
from apiserver.repository import RecordRepository, connect
from apiserver.routes import add_routes
from apiserver.settings import Settings
from apiserver.slots import Slots
from apiserver.state import AppState

log = logging.getLogger("apiserver")


def create_app(settings: Settings) -> FastAPI:
    state = AppState(settings=settings)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        client = connect(settings)
        state.repository = RecordRepository(
            client,
            settings.mongodb_database,
            settings.mongodb_collection,
            ping_s=settings.ping_timeout_s,
            write_chunk=settings.mongodb_write_chunk,
            max_time_ms=settings.max_time_ms,
            slots=Slots(settings.mongodb_max_write_statements),
        )
        log.info(
            "started",
            extra={
                "database": settings.mongodb_database,
                "collection": settings.mongodb_collection,
            },
        )
        settle()  # after start-up: see apiserver.heap
        try:
            yield
        finally:
            state.repository = None
            await client.close()

    app = FastAPI(
        title="apiserver",
        version=__version__,
        summary="Upserts and reads {id, score} records in MongoDB",
        lifespan=lifespan,
        # Served by apiserver.openapi (the document as the caller reaches the service).
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
        # No redirects: apiserver.paths serves /x/ as /x.
        redirect_slashes=False,
        # The service exports Prometheus metrics itself. FastAPI's OpenTelemetry bridge asks
        # on every request whether a provider was configured (environment lookups): off.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.stack = state
    install_handlers(app)
    add_routes(app)
    # add_middleware wraps: the last added runs first. All are plain ASGI callables. Order on
    # a request: trailing slash off -> observe (metrics, access log) -> API key (401) ->
    # content type (415) -> size (413) -> the record routes (apiserver.direct) or the app.
    app.add_middleware(
        DirectRoutes,
        routes=[route for route in app.router.routes if isinstance(route, LeanRoute)],
        exception_handlers=app.exception_handlers,
    )
    app.add_middleware(BodySizeLimit)
    app.add_middleware(JsonContentTypeGuard)
    app.add_middleware(ApiKeyGuard, api_key=settings.api_key.get_secret_value())
    log_requests = settings.access_log and logging.getLevelName(settings.log_level) <= logging.INFO
    app.add_middleware(
        ObserveMiddleware,
        router=app.router,
        metrics=state.metrics,
        access_log=AccessLog() if log_requests else None,
    )
    app.add_middleware(StripTrailingSlash)
    return app


def app_from_env() -> FastAPI:
    """uvicorn factory (``apiserver.app:app_from_env``), used by each worker process."""
    settings = Settings()  # type: ignore[call-arg]  # values come from the environment
    configure_logging(settings.log_level)
    return create_app(settings)
