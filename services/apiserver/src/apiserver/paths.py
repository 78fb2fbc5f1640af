"""One path per resource: ``/internal-read/`` is served as ``/internal-read``.

Starlette would answer it with a redirect to the slash-less URL, built from the path the
service saw: through the Gateway, ``/external-read/`` arrives rewritten as
``/internal-read/`` and the redirect named ``/internal-read``, which the Gateway does not
route (404). Serving the request directly needs no URL at all; the router's own redirect is
off (``redirect_slashes=False``).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class StripTrailingSlash:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                scope["path"] = path.rstrip("/") or "/"
                raw = scope.get("raw_path")
                if raw:
                    scope["raw_path"] = raw.rstrip(b"/") or b"/"
        await self.app(scope, receive, send)
