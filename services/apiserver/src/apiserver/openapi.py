"""``/openapi.json`` and ``/docs`` as the caller reaches the service.

Called directly (port-forward, tests), the document lists the routes as the service serves
them (``/internal-*``). Through the Gateway it must list what the Gateway routes: the
HTTPRoute rules of ``/docs`` and ``/openapi.json`` set the request header
``x-gateway-rewrites: /external-insert/batch=/internal-insert/batch,/external-insert=...``
(each public prefix and the internal prefix its rule rewrites it to; roles/gateway). The
document then holds exactly the operations reachable through those rewrites, under their
public paths, so the docs page's "Try it out" calls paths the Gateway routes; probes and
metrics, which the Gateway does not route, are left out.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from apiserver.errors import ApiError

HEADER = "x-gateway-rewrites"
MAX_HEADER = 2048
MAX_PAIRS = 32
_PATH = re.compile(r"/[A-Za-z0-9._~-]+(/[A-Za-z0-9._~-]+)*")
_CACHE_SIZE = 16


def parse_rewrites(value: str) -> list[tuple[str, str]]:
    """``public=internal,...`` as pairs; ApiError 400 naming the header when malformed."""

    def bad(reason: str) -> ApiError:
        return ApiError(400, "bad_request", f"header {HEADER} is malformed: {reason}")

    if len(value) > MAX_HEADER:
        raise bad(f"longer than {MAX_HEADER} characters")
    pairs: list[tuple[str, str]] = []
    for item in value.split(","):
        public, sep, internal = item.strip().partition("=")
        if not sep:
            raise bad(f"{item.strip()!r} is not public=internal")
        for path in (public, internal):
            if not _PATH.fullmatch(path) or "/../" in f"{path}/" or "/./" in f"{path}/":
                raise bad(f"{path!r} is not an absolute path")
        pairs.append((public, internal))
    if len(pairs) > MAX_PAIRS:
        raise bad(f"more than {MAX_PAIRS} rewrites")
    return pairs


def _under(path: str, prefix: str) -> bool:
    """Gateway API PathPrefix matching: whole path elements."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def gateway_path(path: str, rewrites: list[tuple[str, str]]) -> str | None:
    """The public path that the Gateway rewrites to ``path``, or None when none does.

    A candidate counts only when the Gateway's own choice for it (the longest matching public
    prefix) rewrites it back to ``path``."""
    for public, internal in rewrites:
        if not _under(path, internal):
            continue
        candidate = public + path[len(internal) :]
        matching = [pair for pair in rewrites if _under(candidate, pair[0])]
        chosen_public, chosen_internal = max(matching, key=lambda pair: len(pair[0]))
        if chosen_internal + candidate[len(chosen_public) :] == path:
            return candidate
    return None


def as_routed(document: dict[str, Any], rewrites: list[tuple[str, str]]) -> dict[str, Any]:
    """``document`` with only the paths reachable through ``rewrites``, under public paths."""
    routed = copy.deepcopy(document)
    paths: dict[str, Any] = {}
    for path, item in document["paths"].items():
        public = gateway_path(path, rewrites)
        if public is not None:
            paths[public] = copy.deepcopy(item)
    routed["paths"] = paths
    return routed


def install_openapi(app: FastAPI) -> None:
    """``/openapi.json`` (as the caller reaches it), ``/docs`` and ``/redoc``; the app must
    be created with ``openapi_url=None, docs_url=None, redoc_url=None``."""
    cache: dict[str, dict[str, Any]] = {}

    async def openapi(request: Request) -> JSONResponse:
        value = request.headers.get(HEADER)
        if value is None:
            return JSONResponse(app.openapi())
        document = cache.get(value)
        if document is None:
            document = as_routed(app.openapi(), parse_rewrites(value))
            if len(cache) >= _CACHE_SIZE:
                cache.clear()
            cache[value] = document
        return JSONResponse(document)

    async def docs(_: Request) -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

    async def redoc(_: Request) -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")

    app.add_route("/openapi.json", openapi, include_in_schema=False)
    app.add_route("/docs", docs, include_in_schema=False)
    app.add_route("/redoc", redoc, include_in_schema=False)
