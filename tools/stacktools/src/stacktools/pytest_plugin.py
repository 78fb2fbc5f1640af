"""pytest fixtures for a real MongoDB wire-protocol server.

* ``mongodb_uri`` (session): ``MONGODB_URI`` when the user sets it, otherwise a FerretDB
  process started for the session on a free loopback port.
* ``ferretdb_server`` (function): a private FerretDB the test owns and may stop/restart;
  always FerretDB, because a test cannot stop the user's own MongoDB.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacktools.ferretdb import FERRETDB_MODULE, FerretDB, binary_version, ensure_binary


def pytest_report_header(config: pytest.Config) -> list[str]:
    if os.environ.get("MONGODB_URI"):
        return ["mongodb: MONGODB_URI from the environment (FerretDB not started)"]
    try:
        binary = ensure_binary()
    except Exception as exc:  # reported in the header; the fixtures raise it again
        return [f"mongodb: FerretDB unavailable: {exc}"]
    return [f"mongodb: FerretDB {binary_version(binary)} ({FERRETDB_MODULE}, sqlite) at {binary}"]


@pytest.fixture(scope="session")
def mongodb_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = os.environ.get("MONGODB_URI")
    if env:
        yield env
        return
    with FerretDB(tmp_path_factory.mktemp("ferretdb")) as server:
        yield server.uri


@pytest.fixture
def ferretdb_server(tmp_path: Path) -> Iterator[FerretDB]:
    server = FerretDB(tmp_path / "ferretdb")
    server.start()
    try:
        yield server
    finally:
        server.stop()
