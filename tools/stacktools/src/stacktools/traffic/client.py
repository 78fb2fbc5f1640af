"""HTTP requests through a Gateway: one-off calls and a bounded load of many workers.

Standard library only (``http.client``): each worker thread keeps one connection alive, as a
real client would, and reconnects after an error. A failed request is one that raised or
answered with a status other than the one expected; the load counts both.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """A keep-alive connection to one base URL (``http://host:port``)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme != "http" or parts.hostname is None:
            msg = f"expected http://host:port, got {base_url!r}"
            raise ValueError(msg)
        self.host = parts.hostname
        self.port = parts.port or 80
        self.timeout = timeout
        self.retries = 0  # requests re-sent because the server had closed the idle connection
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        data = None if body is None else json.dumps(body).encode()
        sent = dict(headers or {})
        if data is not None:
            sent["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                self._conn.request(method, path, body=data, headers=sent)
                answer = self._conn.getresponse()
                payload = answer.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # The server closed an idle keep-alive connection: retry once on a new one
                # (only then; any other error is the request's own).
                self.close()
                if attempt == 2:
                    raise
                self.retries += 1
                continue
            except BaseException:
                self.close()
                raise
            if answer.getheader("Connection", "").lower() == "close":
                self.close()
            return Response(answer.status, dict(answer.getheaders()), payload)
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def request(
    base_url: str,
    method: str,
    path: str,
    body: object = None,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Response:
    """One request on a fresh connection."""
    connection = Connection(base_url, timeout)
    try:
        return connection.request(method, path, body, headers)
    finally:
        connection.close()


@dataclass
class LoadResult:
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    retries: int = 0  # GETs re-sent on a new connection after an idle one was closed
    seconds: float = 0.0

    @property
    def failed(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != 200) + len(self.errors)


def run_load(
    base_url: str,
    path: str,
    headers: Mapping[str, str],
    *,
    count: int | None = None,
    seconds: float | None = None,
    workers: int = 8,
    pause: float = 0.0,
    stop: threading.Event | None = None,
    on_response: Callable[[Response], None] | None = None,
) -> LoadResult:
    """GET ``path`` from ``workers`` threads until ``count`` requests were sent, ``seconds``
    passed or ``stop`` is set (whichever first; at least one bound is required). Each worker
    waits ``pause`` seconds after each answer (a steady load rather than a flood)."""
    if count is None and seconds is None:
        msg = "run_load needs count or seconds (loads are bounded)"
        raise ValueError(msg)
    result = LoadResult()
    lock = threading.Lock()
    began = time.monotonic()
    deadline = None if seconds is None else began + seconds
    stop = stop or threading.Event()

    def take() -> bool:
        with lock:
            if stop.is_set() or (deadline is not None and time.monotonic() > deadline):
                return False
            if count is not None and result.sent >= count:
                return False
            result.sent += 1
            return True

    def worker() -> None:
        connection = Connection(base_url)
        try:
            while take():
                try:
                    response = connection.request("GET", path, headers=headers)
                except OSError as exc:
                    with lock:
                        result.errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                with lock:
                    result.statuses[response.status] += 1
                if on_response is not None:
                    on_response(response)
                if pause:
                    stop.wait(pause)
        finally:
            connection.close()
            with lock:
                result.retries += connection.retries

    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(worker) for _ in range(workers)]:
            future.result()
    result.seconds = time.monotonic() - began
    return result
