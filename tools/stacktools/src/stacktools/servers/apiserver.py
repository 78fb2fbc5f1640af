"""The project's apiserver (``python -m apiserver``) as a process: a Gateway backend.

Its JSON access log (one ``apiserver.access`` line per request, with the path it received)
is :attr:`HttpBackend.log`, which the traffic checks read to see where requests arrived.
"""

from __future__ import annotations

import sys
from pathlib import Path

from stacktools.servers.http import HttpBackend


class ApiServer(HttpBackend):
    ready_path = "/readyz"

    def __init__(
        self,
        directory: Path,
        host: str,
        port: int,
        *,
        api_key: str,
        mongodb_uri: str,
        name: str = "apiserver",
        netns: Path | None = None,
    ) -> None:
        super().__init__(directory, host, port, netns)
        self.name = name
        self.api_key = api_key
        self.mongodb_uri = mongodb_uri

    def command(self) -> tuple[list[str], dict[str, str]]:
        env = {
            "APISERVER_API_KEY": self.api_key,
            "APISERVER_MONGODB_URI": self.mongodb_uri,
            "APISERVER_HOST": self.host,
            "APISERVER_PORT": str(self.port),
            "APISERVER_LOG_LEVEL": "INFO",
            "APISERVER_ACCESS_LOG": "true",
            # FerretDB 1.24.2 deadlocks at 100 connections holding matched updates
            # (services/apiserver/README.md): keep pool size x write chunk under 100.
            "APISERVER_MONGODB_MAX_POOL_SIZE": "8",
            "APISERVER_MONGODB_WRITE_CHUNK": "10",
            # FerretDB on SQLite was seen stalling reads for over 5 s (the default timeout, then
            # 503) on this shared machine at a load average of 24; the Gateway tests count a
            # 503 as a failed request, so the backends wait longer for their database.
            "APISERVER_MONGODB_TIMEOUT_MS": "30000",
        }
        return [sys.executable, "-m", "apiserver"], env
