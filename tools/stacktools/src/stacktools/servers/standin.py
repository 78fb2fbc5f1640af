"""A stand-in HTTP backend that identifies itself: for the Gateway's grafana listener, whose
real backend (Grafana, from the kube-prometheus-stack chart) cannot run here.

Every GET answers 200 with ``{"server": "<name> stand-in (stacktools)", "path": ...}`` and the
header ``Server: <name>-stand-in``, so a check through the Gateway can tell it reached this
backend, with which path. ``python -m stacktools.servers.standin --name N --host H --port P``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from stacktools.servers.http import HttpBackend


def identity(name: str) -> str:
    return f"{name} stand-in (stacktools)"


class StandIn(HttpBackend):
    def __init__(
        self, directory: Path, host: str, port: int, *, name: str, netns: Path | None = None
    ) -> None:
        super().__init__(directory, host, port, netns)
        self.name = f"{name}-stand-in"
        self.identity = identity(name)
        self.server_name = name

    def command(self) -> tuple[list[str], dict[str, str]]:
        argv = [sys.executable, "-m", "stacktools.servers.standin"]
        argv += ["--name", self.server_name, "--host", self.host, "--port", str(self.port)]
        return argv, {}


def serve(name: str, host: str, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"server": identity(name), "path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def version_string(self) -> str:
            return f"{name}-stand-in"

    ThreadingHTTPServer((host, port), Handler).serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stacktools.servers.standin")
    parser.add_argument("--name", required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    serve(args.name, args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
