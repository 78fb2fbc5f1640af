"""The local Gateway data plane: the whole stack's Gateway carrying real requests on this
machine (the ``dataplane`` level, ``bench/gateway.py``).

:class:`LocalGateway` starts, in order:

1. a control plane of its own (:class:`~stacktools.servers.controlplane.ControlPlane`);
2. ``site.yml --tags istio,mongodb,apiserver`` against it (inventories/controlplane: the
   Gateway API CRDs, the backends' namespaces, Services and generated Secrets such as the API
   key; the dagster and monitoring roles add nothing the Gateway uses);
3. the backends, in a network namespace of their own (:mod:`stacktools.netns`; EndpointSlices
   refuse loopback addresses): FerretDB, two apiserver processes (stable and canary) with the
   API key from the role's Secret, ``dagster-webserver`` on the pipeline's definitions, and a
   self-identifying stand-in for Grafana;
4. the namespaces and Services the Helm charts would create (Dagster webserver, Grafana)
   and, for every Service a route references, an EndpointSlice pointing at its process;
5. Traefik (:mod:`stacktools.servers.traefik`) with its RBAC and GatewayClass ``traefik``;
6. the gateway role (``site.yml --tags gateway``) with :data:`DATAPLANE_VARS`: the same
   Gateway, routes and ReferenceGrants it applies on kind, of class ``traefik``; its waits
   see the Gateway ``Programmed`` and every route ``Accepted`` with ``ResolvedRefs``.

:attr:`LocalGateway.target` is what the traffic checks (tests/traffic) run against.
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacktools.builds.traefik import TRAEFIK_VERSION
from stacktools.cluster.kubeapi import KubeApi
from stacktools.netns import BackendNetwork
from stacktools.servers.apiserver import ApiServer
from stacktools.servers.controlplane import ControlPlane
from stacktools.servers.dagster_webserver import DagsterWebserver
from stacktools.servers.ferretdb import FerretDB
from stacktools.servers.http import HttpBackend
from stacktools.servers.process import ManagedServer
from stacktools.servers.standin import StandIn, identity
from stacktools.servers.traefik import CLASS_NAME, Traefik, install
from stacktools.traffic.logs import FileAccessLog
from stacktools.traffic.target import Target, ansible_playbook

# What differs from inventories/controlplane for this level: only what selects the data plane
# (the GatewayClass) and the waits a data plane can now satisfy.
DATAPLANE_VARS: dict[str, Any] = {
    "gateway_class_name": CLASS_NAME,
    # Traefik programs the Gateway (istiod on a node-less cluster cannot) ...
    "gateway_wait_programmed": True,
    # ... and judges every route: the Helm charts' Services exist here, and it reads TCPRoute
    # v1alpha2 of the pinned Gateway API v1.5.1.
    "gateway_wait_skip_routes": [],
    # No istiod runs at this level, so nobody accepts GatewayClass `istio`.
    "istio_wait_gatewayclass_accepted": False,
    # The inventory's Helm releases are L3's and the charts level's concern; here the backends
    # (Grafana and Dagster included) are this module's processes behind Services of its own.
    "istio_helm_enabled": False,
    "mongodb_operator_enabled": False,
    "monitoring_helm_enabled": False,
    "dagster_helm_enabled": False,
}
PLAYBOOK_ARGS = ["--inventory", "inventories/controlplane"]
# Each backend's port inside the backend network namespace (its own address, so fixed ports).
PORTS = {"stable": 8000, "canary": 8001, "dagster": 3000, "grafana": 3001, "mongodb": 27017}
SLICE_MANAGER = "stacktools.gateway-api-stack"


class DataplaneError(RuntimeError):
    """A step of the set-up failed; the message names it."""


@dataclass(frozen=True)
class Backend:
    """A Service a route references and the local port its EndpointSlice points at."""

    namespace: str
    service: str
    port_key: str


BACKENDS = (
    Backend("apiserver", "apiserver", "stable"),
    Backend("apiserver", "apiserver-canary", "canary"),
    Backend("mongodb", "mongodb-gateway", "mongodb"),
    Backend("dagster", "dagster-dagster-webserver", "dagster"),
    Backend("monitoring", "kube-prometheus-stack-grafana", "grafana"),
)
# The Services that the Helm charts create on kind (their releases are off here):
# name -> (namespace, port, port name).
CHART_SERVICES = {
    "dagster-dagster-webserver": ("dagster", 3000, "http"),  # dagster_webserver_port
    "kube-prometheus-stack-grafana": ("monitoring", 80, "http-web"),
}


def chart_service(name: str) -> dict[str, Any]:
    namespace, port, port_name = CHART_SERVICES[name]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "stacktools"},
        },
        "spec": {"ports": [{"name": port_name, "port": port, "protocol": "TCP"}]},
    }


def endpoint_slice(
    namespace: str, service: str, port_name: str, address: str, port: int
) -> dict[str, Any]:
    """An EndpointSlice giving ``service`` one ready endpoint, ``address:port``."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-local",
            "namespace": namespace,
            "labels": {
                "kubernetes.io/service-name": service,
                # Not the endpointslice controller's: it leaves this slice alone.
                "endpointslice.kubernetes.io/managed-by": SLICE_MANAGER,
            },
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
    }


class LocalGateway(ManagedServer):
    """The whole local data plane; ``with LocalGateway(dir) as gw: gw.target``."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.plane = ControlPlane(self.directory / "cluster")
        self.network = BackendNetwork()
        self.servers: list[ManagedServer] = []
        # The HTTP backends by role: stable, canary, dagster, grafana (for direct requests).
        self.backends: dict[str, HttpBackend] = {}
        self.traefik: Traefik | None = None
        self.timings: dict[str, float] = {}
        self._target: Target | None = None

    @property
    def target(self) -> Target:
        if self._target is None:
            msg = "the local gateway is not started"
            raise DataplaneError(msg)
        return self._target

    def _step(self, name: str, began: float) -> float:
        now = time.monotonic()
        self.timings[name] = now - began
        return now

    def start(self, timeout: float = 900.0) -> None:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        began = time.monotonic()
        self.plane.start()
        began = self._step("control plane", began)
        kube = KubeApi(self.plane.server, self.plane.ssl_context())
        playbook = ansible_playbook(
            [*PLAYBOOK_ARGS, "--extra-vars", json.dumps(DATAPLANE_VARS)],
            {
                "STACK_CONTROLPLANE_DIR": str(self.plane.directory),
                "K8S_AUTH_KUBECONFIG": str(self.plane.kubeconfig),
            },
        )
        self._converge(playbook, ["--tags", "istio,mongodb,apiserver"], "site.yml (backends)")
        began = self._step("site.yml (istio, mongodb, apiserver)", began)

        self.network.create()
        address, netns = self.network.address, self.network.path
        ferretdb = FerretDB(
            self.directory / "ferretdb", PORTS["mongodb"], host=address, netns=netns
        )
        self._run(ferretdb)
        api_key = _secret(kube, "apiserver", "apiserver-api-key", "api-key")
        stable, canary = (
            ApiServer(
                self.directory / track,
                address,
                PORTS[track],
                api_key=api_key,
                mongodb_uri=ferretdb.uri,
                name=f"apiserver-{track}",
                netns=netns,
            )
            for track in ("stable", "canary")
        )
        grafana = StandIn(
            self.directory / "grafana", address, PORTS["grafana"], name="grafana", netns=netns
        )
        dagster = DagsterWebserver(
            self.directory / "dagster",
            address,
            PORTS["dagster"],
            mongodb_uri=ferretdb.uri,
            netns=netns,
        )
        self.backends = {"stable": stable, "canary": canary, "grafana": grafana, "dagster": dagster}
        for server in self.backends.values():
            self._run(server)
        began = self._step("backends", began)

        for name, (namespace, _, _) in CHART_SERVICES.items():
            kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
            kube.apply(chart_service(name))
        for backend in BACKENDS:
            service = kube.get(f"/api/v1/namespaces/{backend.namespace}/services/{backend.service}")
            port_name = service["spec"]["ports"][0].get("name", "")
            kube.apply(
                endpoint_slice(
                    backend.namespace, backend.service, port_name, address, PORTS[backend.port_key]
                )
            )
        token = install(kube)
        self.traefik = Traefik(
            self.directory / "traefik", self.plane.server, self.plane.pki.ca.cert, token
        )
        self._run(self.traefik)
        began = self._step("traefik", began)
        self._converge(playbook, ["--tags", "gateway"], "the gateway role")
        began = self._step("gateway role", began)

        self._target = Target(
            description=(
                f"Traefik {TRAEFIK_VERSION} (GatewayClass {CLASS_NAME}) on the local control "
                f"plane, backends in network namespace {self.network.name} at {address}; "
                "Grafana is a stand-in"
            ),
            apiserver_url=self.traefik.url("apiserver"),
            dagster_url=self.traefik.url("dagster"),
            grafana_url=self.traefik.url("grafana"),
            grafana_check=("/api/health", identity("grafana")),
            mongodb_uri=f"mongodb://{self.traefik.address}:27018/?directConnection=true",
            api_key=api_key,
            kube=kube,
            stable=FileAccessLog("stable", stable.log),
            canary=FileAccessLog("canary", canary.log),
            canary_weight=10,  # inventories/controlplane/group_vars/all/gateway.yml
            ab_header=("x-canary", "always"),
            playbook=playbook,
        )
        try:
            self._target.await_served()
        except TimeoutError as error:
            raise DataplaneError(str(error)) from error
        self._step("routes served", began)

    def _run(self, server: ManagedServer) -> None:
        self.servers.append(server)
        server.start()

    def _converge(self, playbook: Any, args: list[str], what: str) -> None:
        result = playbook(args)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-40:])
            msg = f"{what} failed (ansible-playbook exit {result.returncode}):\n{tail}"
            raise DataplaneError(msg)

    def stop(self, timeout: float = 15.0) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers = []
        self.network.delete()
        self.plane.stop()


def _secret(kube: KubeApi, namespace: str, name: str, key: str) -> str:
    secret = kube.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
    return base64.b64decode(secret["data"][key]).decode()
