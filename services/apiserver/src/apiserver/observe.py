"""Per-request metrics and one JSON access-log line, labelled by route template.

Labels use the route template (``/internal-read``), never the raw path, and unknown paths
share the label ``unmatched``, so the number of time series stays bounded.
"""

from __future__ import annotations

import logging
import time

from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apiserver.metrics import Metrics

access_log = logging.getLogger("apiserver.access")

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"


def route_template(routes: list[BaseRoute], scope: Scope) -> str:
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        path = getattr(route, "path", None)
        if not isinstance(path, str):
            continue
        if match is Match.FULL:
            return path
        if match is Match.PARTIAL and partial is None:
            partial = path  # right path, wrong method (405)
    return partial or UNMATCHED


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, router: Router, metrics: Metrics, log_requests: bool) -> None:
        self.app = app
        self.router = router
        self.metrics = metrics
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        route = route_template(self.router.routes, scope)
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        status = 500  # what the server answers if the app raises before responding

        async def send_and_capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_capture)
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.observe(method, route, status, elapsed)
            if self.log_requests:
                client = scope.get("client")
                access_log.info(
                    "request",
                    extra={
                        "method": method,
                        "path": scope["path"],
                        "route": route,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "client": client[0] if client else None,
                    },
                )
