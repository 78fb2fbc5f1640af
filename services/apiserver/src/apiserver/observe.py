"""Per-request metrics and one access-log line, labelled by route template.

Labels use the route template (``/internal-read``), never the raw path, and unknown paths
share the label ``unmatched``, so the number of time series stays bounded. The template is
the route the router chose (``scope["route"]``, set while routing); only requests answered
before routing (401, 413, 415 from the guards) are matched against the routes here.
"""

from __future__ import annotations

import time

from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apiserver.access import AccessLog
from apiserver.metrics import Metrics

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
    def __init__(
        self, app: ASGIApp, router: Router, metrics: Metrics, access_log: AccessLog | None
    ) -> None:
        self.app = app
        self.router = router
        self.metrics = metrics
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
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
            chosen = scope.get("route")
            path = getattr(chosen, "path", None)
            route = path if isinstance(path, str) else route_template(self.router.routes, scope)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.observe(method, route, status, elapsed)
            if self.access_log is not None:
                self.access_log.write(scope, method, route, status, elapsed)
