"""On a real kube-apiserver with several nodes registered, `site.yml --check` refuses a
ReadWriteOnce Delta table volume that run pods on other nodes could not mount, and a StorageClass
the cluster does not have, and an access mode an existing claim cannot change to, before changing
anything; it accepts ReadWriteMany on an existing class, and ReadWriteOnce once a single node
accepts pods (the other cordoned, or tainted for the control plane only).

The Node objects are registered through the API as a kubelet would register them (no kubelet
runs: the node controller marks them NotReady, a transient condition the check still counts)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from stacktools.builds import helm
from stacktools.servers.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

NODES = ("node-a", "node-b")
CLASS = "shared-rwx"
ERROR = re.compile(r"^fatal: .*?\n(?=\S|\Z)", re.MULTILINE | re.DOTALL)


@pytest.fixture
def nodes(kube_api: client.ApiClient) -> Iterator[client.CoreV1Api]:
    core = client.CoreV1Api(kube_api)
    for name in NODES:
        core.create_node({"metadata": {"name": name, "labels": {"kubernetes.io/os": "linux"}}})
    yield core
    for name in NODES:
        try:
            core.delete_node(name)
        except ApiException as exc:
            if exc.status != 404:
                raise
    for delete in (
        lambda: client.StorageV1Api(kube_api).delete_storage_class(CLASS),
        lambda: core.delete_namespace("dagster"),
    ):
        try:
            delete()
        except ApiException as exc:
            if exc.status != 404:
                raise


def site_check(
    ansible: Any, plane: ControlPlane, runs: dict[str, dict[str, str]]
) -> dict[str, tuple[int, str]]:
    """`site.yml --check --tags dagster` once per entry of ``runs`` (extra vars), in parallel."""
    started = {}
    for label, extra in runs.items():
        args = [
            "-i",
            "inventories/controlplane",
            "playbooks/site.yml",
            "--check",
            "--tags",
            "dagster",
        ]
        for name, value in extra.items():
            args += ["-e", f"{name}={value}"]
        started[label] = ansible.start(
            "ansible-playbook",
            args,
            STACK_CONTROLPLANE_DIR=str(plane.directory),
            # The inventory installs Helm releases: the preflight wants the set-up step's Helm 3.
            PATH=f"{helm.bin_dir(3)}{os.pathsep}{ansible.bin_dir}{os.pathsep}{os.environ['PATH']}",
        )
    done = {}
    for label, process in started.items():
        output, _ = process.communicate(timeout=1500)
        done[label] = (process.returncode, output)
    return done


def fatal(output: str) -> str:
    (error,) = ERROR.findall(output)
    return " ".join(error.split())


# Four rounds of `site.yml --check` (six runs, up to three at once): about 3 min on a quiet
# machine, over 10 min on one whose cores another job keeps busy.
@pytest.mark.timeout(3000)
def test_the_delta_volume_is_checked_against_the_nodes_and_classes(
    ansible: Any, kube_controlplane: ControlPlane, nodes: client.CoreV1Api
) -> None:
    rwx = {
        "dagster_delta_pvc_access_mode": "ReadWriteMany",
        "dagster_delta_pvc_storage_class": CLASS,
    }
    done = site_check(ansible, kube_controlplane, {"rwo": {}, "rwx, no class": rwx})
    code, output = done["rwo"]
    assert code != 0, output[-3000:]
    assert "changed=0" in output
    assert (
        "dagster: dagster_delta_pvc_access_mode is ReadWriteOnce, but 2 nodes accept pods "
        "(node-a, node-b)" in fatal(output)
    )
    assert "Multi-Attach" in fatal(output)
    code, output = done["rwx, no class"]
    assert code != 0, output[-3000:]
    assert (
        f"dagster: dagster_delta_pvc_storage_class is {CLASS}, but the cluster has no "
        "StorageClass of that name (it has: none)" in fatal(output)
    )

    client.StorageV1Api(nodes.api_client).create_storage_class(
        {"metadata": {"name": CLASS}, "provisioner": "example.com/nfs"}
    )
    # A claim made ReadWriteOnce earlier cannot become ReadWriteMany in place.
    nodes.create_namespace({"metadata": {"name": "dagster"}})
    nodes.create_namespaced_persistent_volume_claim(
        "dagster",
        {
            "metadata": {"name": "earlier-claim"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    # One node cordoned: a single node accepts pods.
    nodes.patch_node("node-b", {"spec": {"unschedulable": True}})
    done = site_check(
        ansible,
        kube_controlplane,
        {
            "rwx": rwx,
            "rwo, one node cordoned": {},
            "rwx over an rwo claim": {**rwx, "dagster_delta_pvc_name": "earlier-claim"},
        },
    )
    assert done["rwx"][0] == 0, done["rwx"][1][-3000:]
    assert done["rwo, one node cordoned"][0] == 0, done["rwo, one node cordoned"][1][-3000:]
    code, output = done["rwx over an rwo claim"]
    assert code != 0, output[-3000:]
    assert (
        "dagster: the claim dagster/earlier-claim exists with access modes ReadWriteOnce, but "
        "dagster_delta_pvc_access_mode is ReadWriteMany; Kubernetes cannot change the access mode"
        in fatal(output)
    )

    # Both schedulable again, but one tainted for the control plane only.
    nodes.patch_node("node-b", {"spec": {"unschedulable": False}})
    taint = {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}
    nodes.patch_node("node-a", {"spec": {"taints": [taint]}})
    done = site_check(ansible, kube_controlplane, {"rwo, one node tainted": {}})
    assert done["rwo, one node tainted"][0] == 0, done["rwo, one node tainted"][1][-3000:]
