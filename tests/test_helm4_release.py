"""L4.5 charts: a Helm release installed, re-run and uninstalled with Helm 4 through a role, on
the local Kubernetes v1.36 control plane, with the kubernetes.core a user's `make setup` gets
from Galaxy (>= 6.4.0; here 6.6.0, from the ansible 14.5.0 package on PyPI: see
stacktools.builds.kubernetes_core).

The controlplane scenario installs every release with Helm 3 and the bundled kubernetes.core
6.2.0 (L3); this proves the other supported combination end to end on one role (mongodb: the
operator's release from its local chart): the preflight accepts it, the release is `deployed`
at its pinned chart, a second run changes nothing, the role's teardown uninstalls it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stacktools.builds import charts, helm, kubernetes_core
from stacktools.servers.controlplane import ControlPlane

pytestmark = pytest.mark.charts

STATES = ("--deployed", "--failed", "--pending", "--superseded", "--uninstalled", "--uninstalling")
RECAP = re.compile(r"localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)")
REPO = Path(__file__).resolve().parents[1]
COLLECTION_VERSION = "gateway_api_stack.showcase.stack_collection_version"


def collections_path(pinned: Path) -> str:
    """The pinned kubernetes.core's folder only, and the checkout seen as this collection
    (collections/ansible_collections/gateway_api_stack: the roles' FQCN lookups)."""
    return os.pathsep.join((str(pinned), str(REPO / "collections")))


def releases(helm4: Path, plane: ControlPlane) -> list[dict[str, Any]]:
    listed = subprocess.run(
        # Every state (Helm 4 has no --all).
        [str(helm4), "list", "--all-namespaces", "--output", "json", *STATES],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env={**os.environ, "KUBECONFIG": str(plane.kubeconfig)},
    )
    found: list[dict[str, Any]] = json.loads(listed.stdout)
    return found


def playbook(ansible: Any, plane: ControlPlane, helm4: Path, collections: Path, name: str) -> str:
    """``ansible-playbook playbooks/<name> --tags mongodb`` on the control plane with Helm 4
    first on PATH and kubernetes.core 6.6.0 the only collection on the collections path."""
    result = ansible.run(
        "ansible-playbook",
        "-i",
        "inventories/controlplane",
        f"playbooks/{name}",
        "--tags",
        "mongodb",
        timeout=1200,
        STACK_CONTROLPLANE_DIR=str(plane.directory),
        ANSIBLE_COLLECTIONS_PATH=collections_path(collections),
        PATH=f"{helm4.parent}{os.pathsep}{ansible.bin_dir}{os.pathsep}{os.environ['PATH']}",
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_helm_4_installs_reruns_and_uninstalls_the_operator_release(
    ansible: Any, kube_controlplane: ControlPlane
) -> None:
    helm4 = helm.binary(4)
    collections = kubernetes_core.collections_path()
    chart = charts.chart("mongodb-kubernetes")
    # The kubernetes.core Ansible loads is the pinned one, not the bundled 6.2.0.
    core = ansible.run(
        "ansible", "localhost", "-m", "debug", "-a",
        f"msg={{{{ lookup('{COLLECTION_VERSION}', 'kubernetes.core').values() | join(' ') }}}}",
        ANSIBLE_COLLECTIONS_PATH=collections_path(collections),
    )  # fmt: skip
    version, path = core.stdout.split()[-2:]
    assert (version, Path(path).is_relative_to(collections)) == ("6.6.0", True), core.stdout

    first = playbook(ansible, kube_controlplane, helm4, collections, "site.yml")
    assert "cannot work together:" not in first
    (deployed,) = releases(helm4, kube_controlplane)
    assert (deployed["name"], deployed["namespace"], deployed["status"]) == (
        "mongodb-kubernetes",
        "mongodb",
        "deployed",
    )
    assert deployed["chart"] == f"{chart.name}-{chart.version}"
    assert RECAP.findall(first)[-1][1] == "0"

    second = playbook(ansible, kube_controlplane, helm4, collections, "site.yml")
    assert RECAP.findall(second)[-1] == ("0", "0"), second[-4000:]
    assert [r["revision"] for r in releases(helm4, kube_controlplane)] == [deployed["revision"]]

    gone = playbook(ansible, kube_controlplane, helm4, collections, "teardown.yml")
    assert int(RECAP.findall(gone)[-1][0]) > 0
    assert releases(helm4, kube_controlplane) == []
