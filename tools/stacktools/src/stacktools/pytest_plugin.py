"""pytest fixtures for real servers on loopback.

* ``mongodb_uri`` (session): ``MONGODB_URI`` when the user sets it, otherwise a FerretDB
  process started for the session on a free loopback port.
* ``ferretdb_server`` (function): a private FerretDB the test owns and may stop/restart;
  always FerretDB, because a test cannot stop the user's own MongoDB.
* ``postgresql_server`` (session): a private PostgreSQL cluster (the system's packages) on a
  free loopback port; ``ferretdb_pg_server`` (function): a FerretDB the test owns on its
  PostgreSQL backend (``--handler=pg``) in a database of its own on that cluster.
* ``kube_controlplane`` (session): a node-less Kubernetes v1.36 control plane (etcd,
  kube-apiserver, kube-controller-manager) built from tools/controlplane; ``.kubeconfig`` is
  an admin kubeconfig. Never a user's cluster: tests create and delete namespaces freely.
* ``kube_node`` (session): a real node (containerd, kubelet, kube-proxy, CoreDNS,
  metrics-server) joined to its own control plane in node mode (stacktools.servers.node);
  ``.kubeconfig`` is the admin kubeconfig, ``.kubectl(...)`` runs the built kubectl.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stacktools.builds import charts as charts_build
from stacktools.builds import containerd, images, node_images
from stacktools.builds import ferretdb as ferretdb_build
from stacktools.builds import helm as helm_build
from stacktools.builds import traefik as traefik_build
from stacktools.builds.controlplane import KUBERNETES_VERSION, binaries_dir
from stacktools.servers import postgresql
from stacktools.servers.controlplane import ControlPlane
from stacktools.servers.ferretdb import FerretDB
from stacktools.servers.node import Node
from stacktools.servers.postgresql import PostgreSQL


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        _mongodb_header(),
        _postgresql_header(),
        _controlplane_header(),
        *_helm_header(),
        _traefik_header(),
        *_images_header(),
        _node_header(),
    ]


def _traefik_header() -> str:
    try:
        path = traefik_build.binary_path()
    except Exception as exc:  # reported in the header; the dataplane fixture raises it again
        return f"traefik: unavailable: {exc}"
    state = "built" if path.is_file() else "NOT built (make prepare)"
    return f"traefik: {traefik_build.TRAEFIK_VERSION} (dataplane level) {state} at {path}"


def _images_header() -> list[str]:
    """Which images the images level runs, and whether their base is the stand-in."""
    try:
        built = [images.image(service) for service in images.SERVICES]
    except Exception as exc:  # reported in the header; the tests raise it again
        return [f"images: unavailable: {exc}"]
    lines = [f"images: {image.describe()}" for image in built]
    if any(image.standin for image in built):
        lines.append(
            f"images: the STAND-IN base was used ({images.OFFICIAL_BASE} cannot be pulled here; "
            "built from Debian bookworm packages by stacktools.builds.standin)"
        )
    return lines


def _mongodb_header() -> str:
    if os.environ.get("MONGODB_URI"):
        return "mongodb: MONGODB_URI from the environment (FerretDB not started)"
    try:
        binary = ferretdb_build.binary()
    except Exception as exc:  # reported in the header; the fixtures raise it again
        return f"mongodb: FerretDB unavailable: {exc}"
    version = ferretdb_build.binary_version(binary)
    return f"mongodb: FerretDB {version} ({ferretdb_build.FERRETDB_MODULE}, sqlite) at {binary}"


def _postgresql_header() -> str:
    try:
        return f"postgresql: {postgresql.check_installed()} (FerretDB --handler=pg tests)"
    except Exception as exc:  # reported in the header; the fixture raises it again
        return f"postgresql: unavailable: {exc}"


def _controlplane_header() -> str:
    try:
        folder = binaries_dir()
    except Exception as exc:  # reported in the header; the fixture raises it again
        return f"controlplane: unavailable: {exc}"
    state = "built" if (folder / "kube-apiserver").is_file() else "NOT built (make prepare)"
    return f"controlplane: Kubernetes {KUBERNETES_VERSION} binaries {state} in {folder}"


def _node_header() -> str:
    try:
        images = node_images.images()
        runtime = containerd.binaries()["containerd"]
    except Exception as exc:  # reported in the header; the fixture raises it again
        return f"node: unavailable: {exc}"
    return (
        f"node: kubelet {KUBERNETES_VERSION}, containerd {containerd.VERSION} ({runtime.parent}), "
        f"images {', '.join(i.ref for i in images.values())}; on the node MongoDB is a "
        f"STAND-IN: FerretDB {ferretdb_build.FERRETDB_VERSION} behind mongodb-svc"
    )


def _helm_header() -> list[str]:
    lines = []
    for major in sorted(helm_build.CLIENTS):
        try:
            lines.append(
                f"helm: {helm_build.binary_version(helm_build.binary(major))} at "
                f"{helm_build.binary(major)}"
            )
        except Exception as exc:  # reported in the header; the fixtures raise it again
            lines.append(f"helm {major}: unavailable: {exc}")
    try:
        found = charts_build.charts()
    except Exception as exc:  # reported in the header; the fixtures raise it again
        return [*lines, f"charts: unavailable: {exc}"]
    folders = sorted({str(item.path.parent) for item in found.values()})
    lines.append(f"charts: {len(found)} pinned charts in {', '.join(folders)}")
    if any(item.stand_in for item in found.values()):
        lines.append(f"charts: NOTE {charts_build.STAND_IN_NOTE}")
    return lines


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


@pytest.fixture(scope="session")
def kube_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A node for the session, or the running one in ``STACK_NODE_DIR`` (started with
    ``python -m stacktools node start --dir ...``), which the session then leaves running."""
    folder = os.environ.get("STACK_NODE_DIR")
    if folder:
        node = Node.attach(Path(folder))
        if not node.running():
            pytest.fail(f"STACK_NODE_DIR={folder} names no running node")
        yield node
        return
    node = Node(tmp_path_factory.mktemp("node"))
    node.start()
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def postgresql_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgreSQL]:
    with PostgreSQL(tmp_path_factory.mktemp("postgresql")) as server:
        yield server


@pytest.fixture
def ferretdb_pg_server(tmp_path: Path, postgresql_server: PostgreSQL) -> Iterator[FerretDB]:
    database = f"ferretdb_{uuid.uuid4().hex[:12]}"
    postgresql_server.create_database(database)
    server = FerretDB(tmp_path / "ferretdb", postgresql_url=postgresql_server.url_of(database))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kube_controlplane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("controlplane")) as plane:
        yield plane


@pytest.fixture(scope="session")
def kube_api(kube_controlplane: ControlPlane) -> Iterator[Any]:
    """A Kubernetes API client of the session's control plane."""
    # The `kubernetes` client is the tests' dependency, not the harness's: imported on use.
    from kubernetes import config  # type: ignore[import-untyped]  # noqa: PLC0415

    api_client = config.new_client_from_config(str(kube_controlplane.kubeconfig))
    yield api_client
    api_client.close()
