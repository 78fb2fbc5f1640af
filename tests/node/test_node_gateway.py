"""The apiserver on the node, reached from this machine through the Gateway: Traefik (the
data-plane level's Gateway API implementation, stacktools.servers.traefik) runs on this
machine against the node's control plane, the gateway role's own Gateway and routes (class
``traefik``) are programmed by it, and requests to the apiserver listener reach the pods on
the kubelet at the addresses of their EndpointSlices (this machine routes the node's pod
range to it). What stays out: Istio's proxies (kind), and NetworkPolicy, which the node's
bridge CNI does not enforce (the policy admits the ``gateway`` namespace; Traefik is a process
on this machine, not a pod there)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stacktools.cluster.kubeapi import KubeApi
from stacktools.servers.traefik import CLASS_NAME, Traefik, install
from stacktools.traffic.client import request
from stacktools.traffic.logs import PodAccessLog

from .conftest import Stack

pytestmark = [pytest.mark.node, pytest.mark.timeout(3600)]

# The gateway role's settings for a Gateway that Traefik serves on this cluster: only the
# class differs from inventories/controlplane + inventories/node, and the waits that a data
# plane can now satisfy. The Dagster and Grafana charts and the single-member MongoDB Service
# are not installed at this level, so those three routes point at no Service (not waited for).
GATEWAY_VARS: dict[str, Any] = {
    "gateway_class_name": CLASS_NAME,
    "gateway_wait_programmed": True,
    "gateway_wait_routes": True,
    "gateway_wait_skip_routes": ["dagster", "grafana", "mongodb"],
}
# The paths of the Deployment's probes, which the kubelet calls on every pod all along.
PROBES = ("/healthz", "/readyz")


@dataclass
class NodeGateway:
    traefik: Traefik
    kube: KubeApi

    @property
    def url(self) -> str:
        return self.traefik.url("apiserver")


@pytest.fixture(scope="module")
def gateway(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeGateway]:
    folder = Path(tmp_path_factory.mktemp("traefik"))
    node = stack.node
    kube = KubeApi.from_kubeconfig(node.kubeconfig)
    ca_file = folder / "ca.crt"
    assert node.plane is not None
    ca_file.write_bytes(node.plane.pki.ca.cert.read_bytes())
    traefik = Traefik(folder, kube.server, ca_file, install(kube))
    traefik.start()
    try:
        stack.converge("--tags", "gateway", "-e", json.dumps(GATEWAY_VARS))
        yield NodeGateway(traefik, kube)
    finally:
        # The Gateway keeps class traefik for the rest of the session (nothing after reads
        # it); the next converge of the inventory sets istio again.
        traefik.stop()


def _call(gateway: NodeGateway, stack: Stack, method: str, path: str, body: object = None) -> Any:
    """One request through the listener; a 503 is retried for up to 300 s as a client would
    (the apiserver's own when MongoDB is busy, or Traefik's "no available server" while no pod
    passes its readiness probe, which on a machine busy with other work can last minutes);
    any other answer is returned."""
    deadline = time.monotonic() + 300
    while True:
        response = request(
            gateway.url, method, path, body, headers={"x-api-key": stack.api_key}, timeout=30
        )
        if response.status != 503:
            return response
        if time.monotonic() > deadline:
            pytest.fail(
                f"{method} {path}: 503 {response.body!r} for 300 s; the apiserver's endpoints: "
                f"{_endpoints(stack)}"
            )
        time.sleep(2)


def _endpoints(stack: Stack) -> list[tuple[str, str, bool]]:
    """(EndpointSlice, address, ready) of every apiserver endpoint: why a 503 lasted."""
    slices = stack.get("-n", "apiserver", "endpointslices")["items"]
    return [
        (s["metadata"]["name"], address, bool(e.get("conditions", {}).get("ready")))
        for s in slices
        for e in s.get("endpoints") or []
        for address in e["addresses"]
    ]


def test_gateway_is_programmed_by_traefik_for_the_roles_routes(
    gateway: NodeGateway, stack: Stack
) -> None:
    found = stack.get("-n", "gateway", "gateway", "stack-gateway")
    assert found["spec"]["gatewayClassName"] == CLASS_NAME
    conditions = {c["type"]: c["status"] for c in found["status"]["conditions"]}
    assert conditions.get("Programmed") == "True", found["status"]
    route = stack.get("-n", "gateway", "httproute", "apiserver")
    parents = route["status"]["parents"]
    assert {c["type"]: c["status"] for c in parents[0]["conditions"]}.items() >= {
        "Accepted": "True",
        "ResolvedRefs": "True",
    }.items(), parents


def test_upsert_and_read_from_this_machine_through_the_listener(
    gateway: NodeGateway, stack: Stack
) -> None:
    stable = PodAccessLog(
        "stable", gateway.kube, "apiserver", "app.kubernetes.io/name=apiserver,track=stable"
    )
    canary = PodAccessLog(
        "canary", gateway.kube, "apiserver", "app.kubernetes.io/name=apiserver,track=canary"
    )
    marks = (stable.mark(), canary.mark())
    first = _call(gateway, stack, "POST", "/external-insert", {"id": "gw-node-1", "score": 0.1})
    assert first.status == 200, first.body
    second = _call(gateway, stack, "POST", "/external-insert", {"id": "gw-node-1", "score": 0.9})
    assert second.status == 200, second.body
    assert second.json()["score"] == 0.9
    assert second.json()["created_at"] == first.json()["created_at"]
    read = _call(gateway, stack, "GET", "/external-read?id=gw-node-1")
    assert read.status == 200, read.body
    assert [(r["id"], r["score"]) for r in read.json()] == [("gw-node-1", 0.9)]
    bad = _call(gateway, stack, "POST", "/external-insert", {"id": "gw-node-2", "score": 2})
    assert bad.status == 422
    assert bad.json()["error"] == "validation_error"
    # Not a route of the Gateway: Traefik answers, no pod sees it.
    assert _call(gateway, stack, "GET", "/internal-read").status == 404

    # The pods received the rewritten paths (their access log on stdout, read through the
    # kubelet; the kubelet's probes aside), once the container runtime has written them.
    def received() -> list[str]:
        logs = zip((stable, canary), marks, strict=True)
        return sorted(
            entry["path"].split("?")[0]
            for log, mark in logs
            for entry in log.since(mark)
            if entry["path"] not in PROBES
        )

    expected = ["/internal-insert"] * 3 + ["/internal-read"]
    deadline = time.monotonic() + 30
    while (paths := received()) != expected and time.monotonic() < deadline:
        time.sleep(1)
    assert paths == expected
    # The record is the one a pod in the cluster reads through the Service.
    out = stack.python(
        f"""
        import json, urllib.request
        request = urllib.request.Request(
            "http://apiserver.apiserver:8000/internal-read?id=gw-node-1",
            headers={{"x-api-key": {stack.api_key!r}}})
        print(json.loads(urllib.request.urlopen(request, timeout=30).read()))
        """
    )
    assert "'gw-node-1'" in out
    assert "0.9" in out
