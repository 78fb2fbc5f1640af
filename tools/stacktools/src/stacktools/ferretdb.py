"""FerretDB: a real MongoDB wire-protocol server (SQLite backend) on loopback for tests.

The binary is built once from the Go module proxy (``github.com/FerretDB/FerretDB``, the
version pinned below) and cached. FerretDB embeds its version from a file that the module
archive lacks, so the build writes that file into a temporary copy of the module source.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from stacktools.build import file_lock, go_build, module_source, writable_copy
from stacktools.net import free_port, wait_for_port
from stacktools.paths import cache_dir
from stacktools.processes import ManagedServer, ServerProcess, start_process

FERRETDB_MODULE = "github.com/FerretDB/FerretDB"
# Pinned: the newest v1 release on the Go module proxy (2026-11-26) with the SQLite backend.
FERRETDB_VERSION = "v1.24.2"


def ensure_binary() -> Path:
    """Path of the cached FerretDB binary, building it first when missing."""
    target = cache_dir() / "bin" / f"ferretdb-{FERRETDB_VERSION}"
    if target.is_file():
        return target
    with file_lock(cache_dir() / "locks" / "ferretdb.lock"):
        if target.is_file():
            return target
        source = module_source(FERRETDB_MODULE, FERRETDB_VERSION)
        with writable_copy(source) as workdir:
            version_file = Path(workdir) / "build" / "version" / "version.txt"
            version_file.write_text(FERRETDB_VERSION + "\n")
            go_build(Path(workdir), "./cmd/ferretdb", target)
    return target


def binary_version(binary: Path) -> str:
    """The version line the binary prints, e.g. ``v1.24.2``."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("version:"):
            return line.split(":", 1)[1].strip()
    return out.stdout.strip()


class FerretDB(ManagedServer):
    """One FerretDB process with its own SQLite data directory and loopback port.

    ``stop()`` and ``start()`` may be called repeatedly: the port and the data survive, so a
    test can take the database away and bring it back.
    """

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.binary = ensure_binary()
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_path = data_dir / "ferretdb.log"
        self._process: ServerProcess | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.alive()

    def start(self, timeout: float = 30.0) -> None:
        if self.running:
            return
        sqlite_dir = self.data_dir / "sqlite"
        sqlite_dir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(self.binary),
            "--handler=sqlite",
            f"--sqlite-url=file:{sqlite_dir}/",
            f"--listen-addr=127.0.0.1:{self.port}",
            f"--state-dir={self.data_dir}",
            "--debug-addr=-",
            "--telemetry=disable",
            "--log-level=WARN",
            "--log-format=json",
        ]
        env = {"DO_NOT_TRACK": "1"}
        self._process = start_process("ferretdb", argv, self.log_path, detach=False, env=env)
        try:
            wait_for_port(self.port, timeout)
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
