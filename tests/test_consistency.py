"""The rendered manifests and Helm values fit together the way the cluster needs them to:
routes reach Services that exist on the right port through ReferenceGrants that allow it,
workloads read Secrets and keys that are rendered, monitors and policies select real labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from pipeline.assets import POOL, pool_limit, records_delta

pytestmark = pytest.mark.schemas

REPO = Path(__file__).resolve().parents[1]
INVENTORIES = ("local", "staging", "production")
# Services made by Helm charts (not rendered by the roles): <release>-dagster-webserver (dagster
# chart helpers: release name + nameOverride "dagster-webserver") and <release>-grafana.
CHART_SERVICES = {("dagster", "dagster-dagster-webserver", 3000)}
CHART_SERVICES |= {("monitoring", "kube-prometheus-stack-grafana", 80)}


def of_kind(manifests: list[Any], kind: str) -> list[Any]:
    return [m for m in manifests if m.kind == kind]


def one(manifests: list[Any], kind: str, name: str) -> dict[str, Any]:
    (found,) = [m.doc for m in manifests if m.kind == kind and m.name == name]
    return found  # type: ignore[no-any-return]


def backend_refs(route: Any) -> list[tuple[str, dict[str, Any]]]:
    return [
        (route.namespace, ref)
        for rule in route.doc["spec"]["rules"]
        for ref in rule.get("backendRefs", [])
    ]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_routes_reach_existing_services_through_reference_grants(
    rendered_manifests: dict[str, list[Any]], inventory: str
) -> None:
    manifests = rendered_manifests[inventory]
    services = {
        (m.namespace, m.name, port["port"])
        for m in of_kind(manifests, "Service")
        for port in m.doc["spec"]["ports"]
    }
    grants = of_kind(manifests, "ReferenceGrant")
    routes = of_kind(manifests, "HTTPRoute") + of_kind(manifests, "TCPRoute")
    assert routes
    for route in routes:
        for route_namespace, ref in backend_refs(route):
            target = (ref.get("namespace", route_namespace), ref["name"], ref["port"])
            where = f"{route.kind} {route.name} -> {target}"
            assert target in services | CHART_SERVICES, f"{where}: no such Service and port"
            if target[0] == route_namespace:
                continue
            allowed = [
                grant
                for grant in grants
                if grant.namespace == target[0]
                and any(
                    src == {"group": "gateway.networking.k8s.io", "kind": route.kind,
                            "namespace": route_namespace}
                    for src in grant.doc["spec"]["from"]
                )
                and any(
                    to.get("kind") == "Service" and to.get("name") in (None, ref["name"])
                    for to in grant.doc["spec"]["to"]
                )
            ]  # fmt: skip
            assert allowed, f"{where}: no ReferenceGrant in {target[0]} allows it"


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_routes_attach_to_listeners_of_their_protocol(
    rendered_manifests: dict[str, list[Any]], inventory: str
) -> None:
    manifests = rendered_manifests[inventory]
    (gateway,) = of_kind(manifests, "Gateway")
    listeners = {item["name"]: item["protocol"] for item in gateway.doc["spec"]["listeners"]}
    expected = {"HTTPRoute": {"HTTP", "HTTPS"}, "TCPRoute": {"TCP"}}
    for route in of_kind(manifests, "HTTPRoute") + of_kind(manifests, "TCPRoute"):
        for parent in route.doc["spec"]["parentRefs"]:
            assert parent["name"] == gateway.name
            assert listeners.get(parent["sectionName"]) in expected[route.kind], route.name


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_workloads_read_rendered_secrets_and_match_their_services(
    rendered_manifests: dict[str, list[Any]], inventory: str
) -> None:
    manifests = rendered_manifests[inventory]
    secrets = {
        (m.namespace, m.name): set(m.doc.get("data", {})) for m in of_kind(manifests, "Secret")
    }
    deployments = of_kind(manifests, "Deployment")
    assert deployments
    for deployment in deployments:
        pod = deployment.doc["spec"]["template"]
        for container in pod["spec"]["containers"]:
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    keys = secrets.get((deployment.namespace, ref["name"]))
                    assert keys is not None, f"{env['name']}: Secret {ref['name']} is not rendered"
                    assert ref["key"] in keys, f"{env['name']}: no key {ref['key']}"
            port_names = {port["name"] for port in container["ports"]}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert container[probe]["httpGet"]["port"] in port_names
    for service in of_kind(manifests, "Service"):
        selector = service.doc["spec"]["selector"]
        pods = [
            d.doc["spec"]["template"]
            for d in deployments
            if d.namespace == service.namespace
            and selector.items() <= d.doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        if service.namespace == "mongodb":
            continue  # selects the operator's StatefulSet pods (label app: <name>-svc)
        assert pods, f"Service {service.name} selects no rendered pod"
        for port in service.doc["spec"]["ports"]:
            names = {
                p["name"] for pod in pods for c in pod["spec"]["containers"] for p in c["ports"]
            }
            assert port["targetPort"] in names, f"Service {service.name}: {port['targetPort']}"


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_monitor_policy_budget_and_autoscaler_select_the_apiserver(
    rendered_manifests: dict[str, list[Any]], inventory: str
) -> None:
    manifests = rendered_manifests[inventory]
    service = one(manifests, "Service", "apiserver")
    monitor = one(manifests, "ServiceMonitor", "apiserver")
    assert monitor["spec"]["namespaceSelector"]["matchNames"] == [service["metadata"]["namespace"]]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    deployment = one(manifests, "Deployment", "apiserver")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    budget = one(manifests, "PodDisruptionBudget", "apiserver")
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    scaler = one(manifests, "HorizontalPodAutoscaler", "apiserver")
    assert scaler["spec"]["scaleTargetRef"]["name"] == "apiserver"
    assert "replicas" not in deployment["spec"]  # left to the autoscaler: no fight, no diff
    policy = one(manifests, "NetworkPolicy", "apiserver-ingress")
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    allowed = {
        peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for rule in policy["spec"]["ingress"]
        for peer in rule["from"]
    }
    (gateway,) = of_kind(manifests, "Gateway")
    assert allowed == {gateway.namespace, monitor["metadata"]["namespace"]}


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_helm_values_point_at_the_rendered_objects(
    rendered_manifests: dict[str, list[Any]],
    rendered_values: dict[str, dict[str, dict[str, Any]]],
    inventory: str,
) -> None:
    manifests, values = rendered_manifests[inventory], rendered_values[inventory]
    names = {(m.kind, m.namespace, m.name) for m in manifests}
    istiod = values["istio/istiod"]
    assert istiod["env"]["PILOT_ENABLE_ALPHA_GATEWAY_API"] == "true"
    stack = values["monitoring/kube-prometheus-stack"]
    assert ("Secret", "monitoring", stack["grafana"]["admin"]["existingSecret"]) in names
    assert stack["crds"]["enabled"] is False  # applied by the role, server-side
    dagster = values["dagster/dagster"]
    assert ("Secret", "dagster", dagster["global"]["postgresqlSecretName"]) in names
    assert dagster["postgresql"]["existingSecret"] == dagster["global"]["postgresqlSecretName"]
    (code,) = dagster["dagster-user-deployments"]["deployments"]
    for secret in code["envSecrets"]:
        if secret["name"] == "pipeline-env":
            assert ("Secret", "dagster", secret["name"]) in names
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in code["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert all(("PersistentVolumeClaim", "dagster", claim) in names for claim in claims)
    env = {item["name"]: item["value"] for item in code["env"]}
    assert env["PIPELINE_MONGODB_DATABASE"] == "uploads"
    assert env["PIPELINE_MONGODB_COLLECTION"] == "records"
    replica_set = one(manifests, "MongoDBCommunity", "mongodb")
    for user in replica_set["spec"]["users"]:
        assert ("Secret", "mongodb", user["passwordSecretRef"]["name"]) in names


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_dagster_instance_lets_one_writer_of_the_table_run_at_a_time(
    rendered_values: dict[str, dict[str, dict[str, Any]]], inventory: str, tmp_path: Path
) -> None:
    """Issue 16 item 7: the deployed instance limits the pipeline's pool to one step at a time.

    The chart writes ``concurrency.pools.defaultLimit`` into dagster.yaml as
    ``concurrency: pools: default_limit``; an instance with that setting gives the pipeline's
    pool (pipeline.assets.POOL) the limit 1, at op granularity (steps wait, runs start).
    """
    values = rendered_values[inventory]["dagster/dagster"]
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    pools = concurrency["pools"]
    assert pools.get("granularity") in (None, "op"), pools  # "run" would not hold back steps
    settings = {"concurrency": {"pools": {"default_limit": pools["defaultLimit"]}}}
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(settings))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert pool_limit(instance) == 1
    assert records_delta.op.pool == POOL


def test_kind_maps_the_host_ports_to_the_gateway_node_ports() -> None:
    group_vars = REPO / "inventories" / "local" / "group_vars" / "all"
    kind = yaml.safe_load((group_vars / "kind.yml").read_text())
    gateway = yaml.safe_load((group_vars / "gateway.yml").read_text())
    mappings = {(m["host_port"], m["node_port"]) for m in kind["kind_port_mappings"]}
    listeners = {(item["port"], item["node_port"]) for item in gateway["gateway_listeners"]}
    assert mappings == listeners
    assert {port for port, _ in listeners} == {8010, 3010, 4010, 27018}
