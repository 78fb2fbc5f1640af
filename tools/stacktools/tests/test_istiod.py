"""istiod on the local control plane turns Gateway API objects into real status: the
GatewayClass is accepted, Gateways and Routes are Accepted, and a cross-namespace backend
resolves only once a ReferenceGrant allows it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client, config

from stacktools.builds.istiod import GATEWAY_API_BUNDLE, ISTIO_MODULE_VERSION
from stacktools.cluster.crds import crds_root
from stacktools.servers.controlplane import ControlPlane
from stacktools.servers.istiod import NAMESPACE, Istiod

if TYPE_CHECKING:
    from conftest import InstallCrds, WaitFor

pytestmark = pytest.mark.istiod

GROUP = "gateway.networking.k8s.io"


@pytest.fixture(scope="module")
def mesh(
    tmp_path_factory: pytest.TempPathFactory, install_crds: InstallCrds
) -> Iterator[client.ApiClient]:
    """A private cluster with istiod: its Gateway API CRDs are the bundle this istiod needs
    (shared/crds/gateway-api/ holds v1.6.1), not the session cluster's v1.5.1."""
    directory = tmp_path_factory.mktemp("istio")
    gateway_api = sorted((crds_root() / "gateway-api" / "experimental").glob("*.yaml"))
    assert gateway_api, (
        f"Gateway API {GATEWAY_API_BUNDLE} experimental CRDs missing under {crds_root()}"
        "/gateway-api/experimental (stacktools.cluster.crds.ISTIOD_BUNDLE)"
    )
    with ControlPlane(directory / "cluster") as plane:
        api = config.new_client_from_config(str(plane.kubeconfig))
        docs = install_crds(api, gateway_api)
        bundles = {d["metadata"]["annotations"][f"{GROUP}/bundle-version"] for d in docs}
        assert bundles == {GATEWAY_API_BUNDLE}
        install_crds(api, [crds_root() / "istio" / "crd-all.gen.yaml"])
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NAMESPACE}})
        with Istiod(directory / "istiod", plane.kubeconfig):
            yield api
        api.close()


def conditions(status: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    """{type: (status, reason)} of a status block's conditions."""
    return {c["type"]: (c["status"], c["reason"]) for c in (status or {}).get("conditions", [])}


def route_conditions(obj: dict[str, Any]) -> dict[str, tuple[str, str]]:
    parents = (obj.get("status") or {}).get("parents", [])
    return conditions(parents[0]) if parents else {}


def test_istio_pin_matches_go_mod() -> None:
    go_mod = (Path(__file__).parents[2] / "istiod" / "go.mod").read_text()
    assert re.search(rf"^\s*istio\.io/istio {ISTIO_MODULE_VERSION}\b", go_mod, re.M)


def test_gatewayclass_istio_is_accepted(mesh: client.ApiClient, wait_for: WaitFor) -> None:
    objects = client.CustomObjectsApi(mesh)

    def accepted() -> dict[str, Any] | None:
        try:
            gc = objects.get_cluster_custom_object(GROUP, "v1", "gatewayclasses", "istio")
        except client.ApiException:
            return None
        return gc if conditions(gc.get("status")).get("Accepted", ("",))[0] == "True" else None

    gatewayclass = wait_for(accepted, "GatewayClass istio to be Accepted")
    assert gatewayclass["spec"]["controllerName"] == "istio.io/gateway-controller"


def test_gateway_and_routes_get_status_and_reference_grants_work(
    mesh: client.ApiClient, wait_for: WaitFor
) -> None:
    core = client.CoreV1Api(mesh)
    objects = client.CustomObjectsApi(mesh)
    for ns in ("gateway", "apiserver", "mongodb"):
        core.create_namespace({"metadata": {"name": ns}})
    core.create_namespaced_service(
        "apiserver",
        {
            "metadata": {"name": "apiserver"},
            "spec": {"selector": {"app": "apiserver"}, "ports": [{"name": "http", "port": 8000}]},
        },
    )
    core.create_namespaced_service(
        "mongodb",
        {
            "metadata": {"name": "mongodb-svc"},
            "spec": {"selector": {"app": "mongodb"}, "ports": [{"name": "mongodb", "port": 27017}]},
        },
    )
    all_namespaces = {"namespaces": {"from": "All"}}
    objects.create_namespaced_custom_object(
        GROUP,
        "v1",
        "gateway",
        "gateways",
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "Gateway",
            "metadata": {"name": "gateway"},
            "spec": {
                "gatewayClassName": "istio",
                "listeners": [
                    {
                        "name": "apiserver",
                        "port": 8010,
                        "protocol": "HTTP",
                        "allowedRoutes": all_namespaces,
                    },
                    {
                        "name": "mongodb",
                        "port": 27018,
                        "protocol": "TCP",
                        "allowedRoutes": {**all_namespaces, "kinds": [{"kind": "TCPRoute"}]},
                    },
                ],
            },
        },
    )
    objects.create_namespaced_custom_object(
        GROUP,
        "v1",
        "apiserver",
        "httproutes",
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": "apiserver"},
            "spec": {
                "parentRefs": [
                    {"name": "gateway", "namespace": "gateway", "sectionName": "apiserver"}
                ],
                "rules": [{"backendRefs": [{"name": "apiserver", "port": 8000}]}],
            },
        },
    )
    objects.create_namespaced_custom_object(
        GROUP,
        "v1",
        "gateway",
        "tcproutes",
        {
            "apiVersion": f"{GROUP}/v1",
            "kind": "TCPRoute",
            "metadata": {"name": "mongodb"},
            "spec": {
                "parentRefs": [{"name": "gateway", "sectionName": "mongodb"}],
                "rules": [
                    {
                        "backendRefs": [
                            {"name": "mongodb-svc", "namespace": "mongodb", "port": 27017}
                        ]
                    }
                ],
            },
        },
    )

    def gateway_with_routes() -> dict[str, Any] | None:
        gw = objects.get_namespaced_custom_object(GROUP, "v1", "gateway", "gateways", "gateway")
        listeners = (gw.get("status") or {}).get("listeners", [])
        attached = {item["name"]: item["attachedRoutes"] for item in listeners}
        return gw if attached == {"apiserver": 1, "mongodb": 1} else None

    gateway = wait_for(gateway_with_routes, "one Route attached to each Gateway listener")
    assert conditions(gateway["status"])["Accepted"] == ("True", "Accepted")
    for listener in gateway["status"]["listeners"]:
        assert conditions(listener)["Accepted"][0] == "True"
        assert conditions(listener)["ResolvedRefs"][0] == "True"

    def route(plural: str, ns: str, name: str, condition: str, want: str) -> Any:
        def check() -> dict[str, Any] | None:
            obj = objects.get_namespaced_custom_object(GROUP, "v1", ns, plural, name)
            return obj if route_conditions(obj).get(condition, ("",))[0] == want else None

        return wait_for(check, f"{plural} {ns}/{name} {condition}={want}")

    http = route("httproutes", "apiserver", "apiserver", "ResolvedRefs", "True")
    assert route_conditions(http)["Accepted"] == ("True", "Accepted")

    # The TCPRoute points into another namespace: refused until a ReferenceGrant allows it.
    tcp = route("tcproutes", "gateway", "mongodb", "ResolvedRefs", "False")
    assert route_conditions(tcp)["ResolvedRefs"] == ("False", "RefNotPermitted")
    assert route_conditions(tcp)["Accepted"] == ("True", "Accepted")
    objects.create_namespaced_custom_object(
        GROUP,
        "v1beta1",
        "mongodb",
        "referencegrants",
        {
            "apiVersion": f"{GROUP}/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": "gateway-tcproutes"},
            "spec": {
                "from": [{"group": GROUP, "kind": "TCPRoute", "namespace": "gateway"}],
                "to": [{"group": "", "kind": "Service", "name": "mongodb-svc"}],
            },
        },
    )
    tcp = route("tcproutes", "gateway", "mongodb", "ResolvedRefs", "True")
    assert route_conditions(tcp)["ResolvedRefs"] == ("True", "ResolvedRefs")
