"""Helpers the control-plane test files share, as fixtures (tests are not a package)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

T = TypeVar("T")


class WaitFor(Protocol):
    def __call__(self, check: Callable[[], T | None], what: str, timeout: float = ...) -> T: ...


class InstallCrds(Protocol):
    def __call__(self, api: client.ApiClient, files: list[Path]) -> list[dict[str, Any]]: ...


def _wait_for(check: Callable[[], T | None], what: str, timeout: float = 90.0) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.3)


def _install_crds(api: client.ApiClient, files: list[Path]) -> list[dict[str, Any]]:
    """Create the CRDs in ``files`` and wait until the API server serves them."""
    ext = client.ApiextensionsV1Api(api)
    docs = [doc for path in files for doc in yaml.safe_load_all(path.read_text()) if doc]
    for doc in docs:
        try:
            ext.create_custom_resource_definition(doc)
        except ApiException as exc:
            if exc.status != 409:  # already installed by an earlier test in this cluster
                raise

    def established(name: str) -> bool:
        conditions = ext.read_custom_resource_definition(name).status.conditions or []
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    for doc in docs:
        name = doc["metadata"]["name"]
        _wait_for(lambda name=name: established(name), f"CRD {name} to be Established")
    return docs


@pytest.fixture(scope="session")
def wait_for() -> WaitFor:
    return _wait_for


@pytest.fixture(scope="session")
def install_crds() -> InstallCrds:
    return _install_crds


class Cli(Protocol):
    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]: ...


@pytest.fixture
def cli(request: pytest.FixtureRequest) -> Cli:
    """``python -m <the test module's CLI_MODULE> ARGS...`` in a separate process."""
    module: str = request.module.CLI_MODULE

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    return run
