"""The local control plane is a real Kubernetes: controllers act, namespaces finalize, and
CRD schemas (including their CEL rules) are enforced by the API server."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client, dynamic
from kubernetes.client.rest import ApiException
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from stacktools.builds.controlplane import (
    ETCD_VERSION,
    KUBERNETES_VERSION,
    ensure_binaries,
    module_dir,
)
from stacktools.builds.gobuild import BuildError, BuildMissingError
from stacktools.cluster.crds import crds_root
from stacktools.servers.controlplane import ControlPlane

if TYPE_CHECKING:
    from conftest import InstallCrds, WaitFor

pytestmark = pytest.mark.controlplane

GATEWAY_API = "gateway.networking.k8s.io"


@pytest.fixture
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


def namespace_gone(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


def test_versions_are_pinned_consistently(kube_api: client.ApiClient) -> None:
    go_mod = (module_dir() / "go.mod").read_text()
    assert re.search(rf"^\s*k8s\.io/kubernetes {re.escape(KUBERNETES_VERSION)}\b", go_mod, re.M)
    assert re.search(rf"^require go\.etcd\.io/etcd/server/v3 {ETCD_VERSION}$", go_mod, re.M)
    staging = KUBERNETES_VERSION.replace("v1.", "v0.", 1)
    replaced = re.findall(r"^\s*(k8s\.io/\S+) => (k8s\.io/\S+) (\S+)$", go_mod, re.M)
    assert len(replaced) >= 30
    assert all(left == right and version == staging for left, right, version in replaced)
    assert client.VersionApi(kube_api).get_code().git_version == KUBERNETES_VERSION


def test_controllers_create_replicaset_and_pods_and_collect_garbage(
    kube_api: client.ApiClient, namespace: str, wait_for: WaitFor
) -> None:
    apps = client.AppsV1Api(kube_api)
    core = client.CoreV1Api(kube_api)
    labels = {"app": "web"}
    deployment = apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "web", "image": "registry.invalid/web:1"}]},
                },
            },
        },
    )

    def owned_replicaset() -> client.V1ReplicaSet | None:
        for rs in apps.list_namespaced_replica_set(namespace).items:
            owners = rs.metadata.owner_references or []
            if any(o.uid == deployment.metadata.uid for o in owners):
                return rs
        return None

    replicaset = wait_for(owned_replicaset, "the deployment controller to create a ReplicaSet")
    assert replicaset.spec.replicas == 2

    def pods_of_replicaset() -> list[client.V1Pod] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        owned = [
            p
            for p in pods
            if any(o.uid == replicaset.metadata.uid for o in p.metadata.owner_references or [])
        ]
        return owned if len(owned) == 2 else None

    pods = wait_for(pods_of_replicaset, "the ReplicaSet controller to create 2 Pods")
    # No nodes and no scheduler: the Pods exist but stay Pending.
    assert {p.status.phase for p in pods} == {"Pending"}

    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    wait_for(
        lambda: not apps.list_namespaced_replica_set(namespace).items,
        "the garbage collector to delete the ReplicaSet",
    )


def test_deleted_namespace_finalizes_and_goes_away(
    kube_api: client.ApiClient, wait_for: WaitFor
) -> None:
    core = client.CoreV1Api(kube_api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    core.create_namespaced_config_map(name, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    # The ServiceAccount controller fills every new namespace.
    wait_for(
        lambda: any(
            s.metadata.name == "default" for s in core.list_namespaced_service_account(name).items
        ),
        "the default ServiceAccount",
    )
    core.delete_namespace(name)
    assert core.read_namespace(name).status.phase == "Terminating"
    wait_for(lambda: namespace_gone(core, name), f"namespace {name} to be finalized")
    with pytest.raises(ApiException) as excinfo:
        core.read_namespaced_config_map("c", name)
    assert excinfo.value.status == 404


def _validation_messages(crd: dict[str, Any]) -> set[str]:
    """Every x-kubernetes-validations message in a CRD document."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            for rule in node.get("x-kubernetes-validations", []):
                found.add(rule["message"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(crd)
    return found


def _httproute(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": f"{GATEWAY_API}/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": f"r-{uuid.uuid4().hex[:6]}"},
        "spec": {"parentRefs": [{"name": "gateway"}], "rules": [rule]},
    }


BACKEND = {"name": "apiserver", "port": 8000}
CEL_CASES = {
    "redirect-with-backend": (
        {
            "filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}],
            "backendRefs": [BACKEND],
        },
        {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]},
        "RequestRedirect filter must not be used together with backendRefs",
    ),
    "rewrite-prefix-without-prefix-match": (
        {
            "matches": [{"path": {"type": "Exact", "value": "/api"}}],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
                    },
                }
            ],
            "backendRefs": [BACKEND],
        },
        {
            "matches": [{"path": {"type": "PathPrefix", "value": "/api"}}],
            "filters": [
                {
                    "type": "URLRewrite",
                    "urlRewrite": {
                        "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}
                    },
                }
            ],
            "backendRefs": [BACKEND],
        },
        "When using URLRewrite filter with path.replacePrefixMatch, exactly one PathPrefix match "
        "must be specified",
    ),
    "relative-path-prefix": (
        {"matches": [{"path": {"type": "PathPrefix", "value": "api"}}], "backendRefs": [BACKEND]},
        {"matches": [{"path": {"type": "PathPrefix", "value": "/api"}}], "backendRefs": [BACKEND]},
        "value must be an absolute path and start with '/' when type one of "
        "['Exact', 'PathPrefix']",
    ),
}


@pytest.mark.parametrize("case", sorted(CEL_CASES))
def test_gateway_api_cel_rules_are_enforced(
    kube_api: client.ApiClient, namespace: str, case: str, install_crds: InstallCrds
) -> None:
    experimental = crds_root() / "gateway-api-v1.5.1" / "experimental"
    docs = install_crds(kube_api, sorted(experimental.glob("*.yaml")))
    httproute_crd = next(d for d in docs if d["metadata"]["name"] == f"httproutes.{GATEWAY_API}")
    invalid, valid, message = CEL_CASES[case]
    # The message is one of the pinned CRD's CEL rules, not an OpenAPI schema check.
    assert message in _validation_messages(httproute_crd)

    objects = client.CustomObjectsApi(kube_api)
    with pytest.raises(ApiException) as excinfo:
        objects.create_namespaced_custom_object(
            GATEWAY_API, "v1", namespace, "httproutes", _httproute(invalid)
        )
    assert excinfo.value.status == 422
    assert message in excinfo.value.body
    # The same route without the broken rule is accepted.
    created = objects.create_namespaced_custom_object(
        GATEWAY_API, "v1", namespace, "httproutes", _httproute(valid)
    )
    assert created["metadata"]["uid"]


def test_custom_resource_before_its_crd_fails_clearly(
    kube_api: client.ApiClient, namespace: str, install_crds: InstallCrds
) -> None:
    crd_file = crds_root() / "mongodb" / "mongodbcommunity.mongodb.com_mongodbcommunity.yaml"
    manifest = {
        "apiVersion": "mongodbcommunity.mongodb.com/v1",
        "kind": "MongoDBCommunity",
        "metadata": {"name": "mongodb", "namespace": namespace},
        "spec": {
            "type": "ReplicaSet",
            "members": 1,
            "version": "8.0.4",
            "security": {"authentication": {"modes": ["SCRAM"]}},
            "users": [{"name": "app", "roles": [{"name": "readWrite", "db": "uploads"}]}],
        },
    }
    # kubernetes.core.k8s resolves kinds through the dynamic client's discovery, as here.
    with pytest.raises(ResourceNotFoundError, match=r"No matches found for .*MongoDBCommunity"):
        dynamic.DynamicClient(kube_api).resources.get(
            api_version=manifest["apiVersion"], kind=manifest["kind"]
        )
    objects = client.CustomObjectsApi(kube_api)
    with pytest.raises(ApiException) as excinfo:
        objects.create_namespaced_custom_object(
            "mongodbcommunity.mongodb.com", "v1", namespace, "mongodbcommunity", manifest
        )
    assert excinfo.value.status == 404

    install_crds(kube_api, [crd_file])
    try:
        resource = dynamic.DynamicClient(kube_api).resources.get(
            api_version=manifest["apiVersion"], kind=manifest["kind"]
        )
        created = resource.create(body=manifest, namespace=namespace)
        assert created.metadata.name == "mongodb"
    finally:
        client.ApiextensionsV1Api(kube_api).delete_custom_resource_definition(
            "mongodbcommunity.mongodbcommunity.mongodb.com"
        )


def test_missing_go_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STACK_CACHE_DIR", str(tmp_path))  # nothing cached: a build is needed
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(BuildError, match=r"Go is required .* `go` is not on PATH"):
        ensure_binaries()


def test_a_server_never_builds_it_names_the_set_up_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STACK_CACHE_DIR", str(tmp_path / "cache"))  # nothing built here
    with pytest.raises(
        BuildMissingError, match=r"Kubernetes v1\.36\.3 is not built .*make prepare"
    ):
        ControlPlane(tmp_path / "cluster").start()
    assert not list((tmp_path / "cache").rglob("kube-apiserver*"))
