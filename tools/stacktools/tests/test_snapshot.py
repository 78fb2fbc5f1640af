"""stacktools.cluster.snapshot on the local control plane: it records every object by identity
(namespaced and cluster-scoped, custom resources too, Events excepted) and tells what appeared
and what vanished, letting only CRDs and their APIService entries remain."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from stacktools.cluster.snapshot import Client, ObjectId, compare, load, save, take
from stacktools.servers.controlplane import ControlPlane

if TYPE_CHECKING:
    from conftest import Cli, WaitFor

pytestmark = pytest.mark.controlplane

CLI_MODULE = "stacktools.cluster.snapshot"


def crd(group: str) -> dict[str, object]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group,
            "scope": "Cluster",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": {"type": "object"}},
                }
            ],
        },
    }


def test_a_snapshot_tells_what_appeared_what_vanished_and_keeps_only_crds(
    kube_controlplane: ControlPlane, kube_api: client.ApiClient, wait_for: WaitFor
) -> None:
    reader = Client(kube_controlplane.kubeconfig)
    before = take(reader)
    suffix = uuid.uuid4().hex[:8]
    namespace, role, group = f"snap-{suffix}", f"snap-{suffix}", f"snap{suffix}.example.com"
    core, rbac = client.CoreV1Api(kube_api), client.RbacAuthorizationV1Api(kube_api)
    core.create_namespace({"metadata": {"name": namespace}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "left"}})
    core.create_namespaced_event(
        namespace,
        {
            "metadata": {"name": "noise"},
            "involvedObject": {"kind": "ConfigMap", "namespace": namespace, "name": "left"},
            "reason": "Test",
            "message": "an event is a record, not state",
        },
    )
    rbac.create_cluster_role({"metadata": {"name": role}})
    client.ApiextensionsV1Api(kube_api).create_custom_resource_definition(crd(group))
    custom = client.CustomObjectsApi(kube_api)

    def served() -> bool:
        try:
            custom.list_cluster_custom_object(group, "v1", "widgets")
        except ApiException:
            return False
        return True

    wait_for(served, f"the API server to serve widgets.{group}")
    custom.create_cluster_custom_object(group, "v1", "widgets", {
        "apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w"},
    })  # fmt: skip

    after = take(reader)
    found = compare(before, after)
    assert f"Namespace {namespace}" in found["left_behind"]
    assert f"ConfigMap {namespace}/left" in found["left_behind"]
    assert f"rbac.authorization.k8s.io/ClusterRole {role}" in found["left_behind"]
    assert f"{group}/Widget w" in found["left_behind"]  # custom resources are listed too
    assert not any("Event" in item for item in found["left_behind"])
    assert found["kept_crds"] == [f"widgets.{group}"]
    assert found["kept_apiservices"] == [f"v1.{group}"]
    assert not any(item.startswith("apiextensions") for item in found["left_behind"])

    rbac.delete_cluster_role(role)
    gone = compare(after, take(reader))
    assert f"rbac.authorization.k8s.io/ClusterRole {role}" in gone["vanished"]
    # Leave the shared cluster as it was.
    custom.delete_cluster_custom_object(group, "v1", "widgets", "w")
    client.ApiextensionsV1Api(kube_api).delete_custom_resource_definition(f"widgets.{group}")
    core.delete_namespace(namespace)


def test_the_command_line_exits_1_and_names_what_is_left(
    kube_controlplane: ControlPlane, kube_api: client.ApiClient, cli: Cli, tmp_path: Path
) -> None:
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    kubeconfig = str(kube_controlplane.kubeconfig)
    assert cli("take", "--kubeconfig", kubeconfig, "--out", str(before)).returncode == 0
    name = f"snap-cli-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(kube_api).create_namespace({"metadata": {"name": name}})
    assert cli("take", "--kubeconfig", kubeconfig, "--out", str(after)).returncode == 0
    result = cli("compare", str(before), str(after))
    assert result.returncode == 1, result.stderr
    assert f"Namespace {name}" in json.loads(result.stdout)["left_behind"]
    same = cli("compare", str(after), str(after))
    assert same.returncode == 0
    assert json.loads(same.stdout) == {
        "left_behind": [],
        "vanished": [],
        "kept_crds": [],
        "kept_apiservices": [],
    }
    client.CoreV1Api(kube_api).delete_namespace(name)
    broken = cli("take", "--kubeconfig", str(tmp_path / "missing"), "--out", str(after))
    assert broken.returncode == 2
    assert broken.stderr.startswith("error: ")
    assert "Traceback" not in broken.stderr


def test_records_round_trip(tmp_path: Path) -> None:
    objects = [ObjectId("", "Namespace", "", "a"), ObjectId("apps", "Deployment", "a", "b")]
    save(objects, tmp_path / "s.json")
    assert load(tmp_path / "s.json") == objects
