"""Checks that run before routing and body parsing: API key, content type, body size.

They are raw ASGI middlewares so that an unauthenticated or oversized request is refused
before any byte of its body is parsed, with the same JSON error shape as everything else.
"""

from __future__ import annotations

import hmac

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from apiserver.errors import send_error

MAX_BODY_BYTES = 1024 * 1024
PROTECTED_PREFIX = "/internal-"
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def key_matches(expected: bytes, presented: bytes | None) -> bool:
    return presented is not None and hmac.compare_digest(expected, presented)


class ApiKeyGuard:
    """``x-api-key`` must equal the configured key on every ``/internal-*`` path."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.expected = api_key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(PROTECTED_PREFIX):
            presented = header(scope, b"x-api-key")
            if not key_matches(self.expected, presented):
                reason = "missing x-api-key header" if presented is None else "wrong x-api-key"
                await send_error(send, 401, "unauthorized", reason)
                return
        await self.app(scope, receive, send)


class JsonContentTypeGuard:
    """Writes to ``/internal-*`` must declare ``application/json`` (or ``+json``)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] in _BODY_METHODS
            and scope["path"].startswith(PROTECTED_PREFIX)
        ):
            value = header(scope, b"content-type") or b""
            media = value.split(b";", 1)[0].strip().lower()
            if media != b"application/json" and not (
                media.startswith(b"application/") and media.endswith(b"+json")
            ):
                shown = media.decode("latin-1") or "none"
                await send_error(
                    send, 415, "unsupported_media_type", f"expected application/json, got {shown}"
                )
                return
        await self.app(scope, receive, send)


class BodySizeLimit:
    """Reads the whole body (at most ``limit`` bytes) before the app sees it; 413 beyond."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        declared = header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        await send_error(send, 413, "content_too_large", f"request body exceeds {self.limit} bytes")
