"""FerretDB: a real MongoDB wire-protocol server on loopback for tests, on its SQLite backend
or (``postgresql_url``) its PostgreSQL backend (:mod:`stacktools.servers.postgresql`).

The binary comes from the set-up step (:mod:`stacktools.builds.ferretdb`)."""

from __future__ import annotations

import time
from pathlib import Path

from stacktools.builds import ferretdb as build
from stacktools.net import free_port, wait_for_port
from stacktools.servers.process import ManagedServer, ServerProcess, start_process


class FerretDB(ManagedServer):
    """One FerretDB process with its own SQLite data directory and loopback port, or with
    ``postgresql_url`` its PostgreSQL backend (``--handler=pg``) on that database.

    ``stop()`` and ``start()`` may be called repeatedly: the port and the data survive, so a
    test can take the database away and bring it back.
    """

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        netns: Path | None = None,
        postgresql_url: str | None = None,
    ) -> None:
        """``host``/``netns``: listen on an address inside a network namespace instead of
        loopback (the dataplane level's TCPRoute backend, :mod:`stacktools.netns`).
        ``postgresql_url``: FerretDB's PostgreSQL backend on that database instead of SQLite."""
        self.binary = build.binary()
        self.data_dir = data_dir
        self.host = host
        self.netns = netns
        self.postgresql_url = postgresql_url
        # Loopback by default; the images level passes Docker's bridge address, which only this
        # machine and its containers reach (a free port is looked up there, not in a netns).
        self.port = port or (free_port() if netns is not None else free_port(host))
        self.log_path = data_dir / "ferretdb.log"
        self._process: ServerProcess | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def backend(self) -> str:
        return "sqlite" if self.postgresql_url is None else "postgresql"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.alive()

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.postgresql_url is None:
            sqlite_dir = self.data_dir / "sqlite"
            sqlite_dir.mkdir(parents=True, exist_ok=True)
            handler = ["--handler=sqlite", f"--sqlite-url=file:{sqlite_dir}/"]
        else:
            handler = ["--handler=pg"]  # the URL (with its password) goes in the environment
        argv = [
            str(self.binary),
            *handler,
            f"--listen-addr={self.host}:{self.port}",
            f"--state-dir={self.data_dir}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=WARN",
            "--log-format=json",
        ]
        env = {"DO_NOT_TRACK": "1"}
        if self.postgresql_url is not None:
            env["FERRETDB_POSTGRESQL_URL"] = self.postgresql_url
        self._process = start_process(
            "ferretdb", argv, self.log_path, detach=False, env=env, netns=self.netns
        )
        try:
            wait_for_port(self.port, timeout, host=self.host)
        except TimeoutError:
            tail = self._process.log_tail(2000)
            self.stop()
            msg = f"FerretDB did not listen on port {self.port} within {timeout}s; log:\n{tail}"
            raise RuntimeError(msg) from None

    def stop(self, timeout: float = 10.0) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.stop(timeout)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL), as a crash would."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()


def wait_until_stopped(port: int, timeout: float = 10.0) -> None:
    """Block until nothing accepts connections on the port any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            wait_for_port(port, timeout=0.1)
        except TimeoutError:
            return
        time.sleep(0.05)
    msg = f"port {port} still accepts connections after {timeout}s"
    raise TimeoutError(msg)
