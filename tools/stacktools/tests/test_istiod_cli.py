"""`python -m stacktools istiod start|status|stop` as the Molecule controlplane scenario calls
it: istiod outlives the starting process, acts on the cluster, a second start reuses it, stop
leaves nothing behind and may be repeated, and a wrong kubeconfig is an error message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kubernetes import client, config

from stacktools.cluster.crds import crds_root
from stacktools.servers.controlplane import ControlPlane
from stacktools.servers.istiod import NAMESPACE
from stacktools.servers.process import pid_running

if TYPE_CHECKING:
    from conftest import Cli, InstallCrds, WaitFor

pytestmark = pytest.mark.istiod


CLI_MODULE = "stacktools.servers.istiod"  # what the `cli` fixture runs


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, install_crds: InstallCrds
) -> Iterator[ControlPlane]:
    """A private cluster with what istiod needs first: the Istio and Gateway API CRDs and
    istio-system (in the scenario, its prepare step installs them)."""
    with ControlPlane(tmp_path_factory.mktemp("istiod-cli")) as plane:
        api = config.new_client_from_config(str(plane.kubeconfig))
        root = crds_root()
        install_crds(api, sorted((root / "gateway-api-v1.5.1" / "experimental").glob("*.yaml")))
        install_crds(api, [root / "istio" / "crd-all.gen.yaml"])
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        api.close()
        yield plane


@pytest.mark.slow
def test_start_status_stop_from_separate_processes(
    cluster: ControlPlane, tmp_path: Path, wait_for: WaitFor, cli: Cli
) -> None:
    folder = tmp_path / "istiod"
    started = cli("start", "--dir", str(folder), "--kubeconfig", str(cluster.kubeconfig))
    assert started.returncode == 0, started.stderr
    assert Path(started.stdout.strip()) == folder / "state.json"
    pid = json.loads((folder / "state.json").read_text())["pid"]
    try:
        assert pid_running(pid)
        status = cli("status", "--dir", str(folder))
        assert status.returncode == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["ready"] is True

        # It works on the cluster: istiod creates and accepts its GatewayClass.
        objects = client.CustomObjectsApi(config.new_client_from_config(str(cluster.kubeconfig)))

        def accepted() -> bool:
            try:
                gc = objects.get_cluster_custom_object(
                    "gateway.networking.k8s.io", "v1", "gatewayclasses", "istio"
                )
            except client.ApiException:
                return False
            conditions = (gc.get("status") or {}).get("conditions", [])
            return any(c["type"] == "Accepted" and c["status"] == "True" for c in conditions)

        wait_for(accepted, "istiod to create and accept GatewayClass istio")

        again = cli("start", "--dir", str(folder), "--kubeconfig", str(cluster.kubeconfig))
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        assert json.loads((folder / "state.json").read_text())["pid"] == pid
    finally:
        stopped = cli("stop", "--dir", str(folder))
    assert stopped.returncode == 0, stopped.stderr
    assert not pid_running(pid)
    assert not (folder / "state.json").exists()
    assert "discovery" in (folder / "istiod.log").read_text()

    assert cli("stop", "--dir", str(folder)).returncode == 0
    after = cli("status", "--dir", str(folder))
    assert after.returncode == 1
    assert json.loads(after.stdout)["running"] is False


def test_start_without_a_kubeconfig_is_an_error_message(tmp_path: Path, cli: Cli) -> None:
    missing = tmp_path / "no-kubeconfig"
    result = cli("start", "--dir", str(tmp_path / "istiod"), "--kubeconfig", str(missing))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: kubeconfig {missing} does not exist; start the cluster first"
    )
    assert "Traceback" not in result.stderr
