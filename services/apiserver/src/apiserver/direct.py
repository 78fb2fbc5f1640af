"""The record routes served straight from the middleware chain, without FastAPI's router.

A request for one of the :class:`apiserver.lean.LeanRoute` routes (exact method and path)
runs its handler here, after every guard and inside the metrics and access log, as the router
would have run it; everything else goes on to the app. What this skips per request: the
exception middleware's and the route's wrappers of ``send``, the exit stack kept for
dependencies with ``yield`` (these handlers have none), and matching the path against every
route. Errors get the app's own exception handlers, looked up the way Starlette looks them
up; an error without one (a bug) propagates to Starlette's server-error middleware, which
answers 500 and logs it, as for any other route.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from apiserver.lean import LeanRoute

ExceptionHandler = Callable[[Request, Any], Response | Awaitable[Response]]


class DirectRoutes:
    def __init__(
        self,
        app: ASGIApp,
        routes: list[LeanRoute],
        exception_handlers: Mapping[Any, ExceptionHandler],
    ) -> None:
        self.app = app
        self.routes = {
            (method, route.path): route for route in routes for method in route.methods or ()
        }
        # As Starlette's ExceptionMiddleware: the handler for Exception (and 500) belongs to
        # the server-error middleware outside.
        self.handlers = {
            key: handler
            for key, handler in exception_handlers.items()
            if isinstance(key, type) and key is not Exception
        }

    def _handler(self, exc: Exception) -> ExceptionHandler | None:
        for cls in type(exc).__mro__:
            if cls in self.handlers:
                return self.handlers[cls]
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = (
            self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if route is None:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        scope["endpoint"] = route.endpoint
        scope["path_params"] = {}
        request = Request(scope, receive, send)
        try:
            response = await route.handler(request)
        except Exception as exc:
            handler = self._handler(exc)
            if handler is None:
                raise
            answer = handler(request, exc)
            response = await answer if inspect.isawaitable(answer) else answer
        await response(scope, receive, send)
