"""Traefik Proxy as a Gateway API data plane on this machine, against a Kubernetes API server.

Its ``kubernetesgateway`` provider watches GatewayClasses with controller
``traefik.io/gateway-controller``, writes Gateway and route status, and carries the traffic:
each Gateway listener attaches to the Traefik entry point with the same port, so Traefik
listens on the listeners' own ports (8010, 3010, 4010, 27018) on an address of the loopback
range of its own (:func:`stacktools.net.free_loopback_address`). Services resolve to their
EndpointSlices. The binary comes from the set-up step (:mod:`stacktools.builds.traefik`).

What a Helm install of Traefik would declare is applied by :func:`install`: a namespace, a
ServiceAccount with the chart's RBAC for the Gateway API provider, the GatewayClass; Traefik
authenticates with a token of that ServiceAccount (TokenRequest), so RBAC is exercised.

Command line::

    python -m stacktools traefik start  --dir DIR --kubeconfig KUBECONFIG [--listener NAME=PORT ...]
    python -m stacktools traefik status --dir DIR   # JSON; exit 0 only when ready
    python -m stacktools traefik stop   --dir DIR
    python -m stacktools traefik build              # build or reuse the binary; print its path
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from stacktools.builds.gobuild import BuildError
from stacktools.builds.traefik import TRAEFIK_VERSION, binary, ensure_binary
from stacktools.cli import lifecycle_parser, run, state_handlers
from stacktools.cluster.kubeapi import KubeApi, KubeApiError
from stacktools.net import free_loopback_address, free_port
from stacktools.servers.process import ProcessServer, ServerProcess, http_ok, start_process

CONTROLLER_NAME = "traefik.io/gateway-controller"
CLASS_NAME = "traefik"
NAMESPACE = "traefik"
SERVICE_ACCOUNT = "traefik"
STATE_FILE = "state.json"
# The gateway role's default listeners (roles/gateway/defaults/main.yml).
DEFAULT_LISTENERS = {"apiserver": 8010, "dagster": 3010, "grafana": 4010, "mongodb": 27018}
TOKEN_SECONDS = 24 * 3600
LABELS = {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/managed-by": "stacktools"}

_GATEWAY_KINDS = [
    "gatewayclasses",
    "gateways",
    "httproutes",
    "grpcroutes",
    "tcproutes",
    "tlsroutes",
    "referencegrants",
    "backendtlspolicies",
]


class TraefikError(RuntimeError):
    """Traefik did not start; the message says why and where its log is."""


def controller_objects(class_name: str = CLASS_NAME) -> list[dict[str, Any]]:
    """What Traefik's Helm chart declares for the Gateway API provider (RBAC, GatewayClass)."""
    meta = {"labels": LABELS}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE, **meta}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": NAMESPACE, **meta},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "traefik-gateway", **meta},
            "rules": [
                {
                    "apiGroups": [""],
                    "resources": ["namespaces", "services", "secrets", "configmaps"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["discovery.k8s.io"],
                    "resources": ["endpointslices"],
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["gateway.networking.k8s.io"],
                    "resources": _GATEWAY_KINDS,
                    "verbs": ["get", "list", "watch"],
                },
                {
                    "apiGroups": ["gateway.networking.k8s.io"],
                    "resources": [f"{kind}/status" for kind in _GATEWAY_KINDS],
                    "verbs": ["update", "patch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "traefik-gateway", **meta},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "traefik-gateway",
            },
            "subjects": [
                {"kind": "ServiceAccount", "name": SERVICE_ACCOUNT, "namespace": NAMESPACE}
            ],
        },
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "GatewayClass",
            "metadata": {"name": class_name, **meta},
            "spec": {"controllerName": CONTROLLER_NAME},
        },
    ]


def install(kube: KubeApi, class_name: str = CLASS_NAME) -> str:
    """Apply :func:`controller_objects`; return a fresh token of Traefik's ServiceAccount.

    The Gateway API CRDs must be installed first (the GatewayClass is one of their kinds).
    """
    for manifest in controller_objects(class_name):
        kube.apply(manifest)
    token = kube.request(
        "POST",
        f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/{SERVICE_ACCOUNT}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": TOKEN_SECONDS},
        },
    )
    return str(token["status"]["token"])


class Traefik(ProcessServer):
    """One Traefik process serving the Gateways of one GatewayClass; state in ``directory``.

    ``listeners`` maps entry point names to the Gateway listener ports they serve; all of
    them listen on ``address`` (default: a free address of the loopback range).
    """

    name = "traefik"

    def __init__(
        self,
        directory: Path,
        server: str,
        ca_file: Path,
        token: str,
        *,
        listeners: Mapping[str, int] | None = None,
        address: str | None = None,
        detach: bool = False,
    ) -> None:
        self.directory = directory.resolve()
        self.server = server
        self.ca_file = ca_file
        self.token = token
        self.listeners = dict(listeners or DEFAULT_LISTENERS)
        self.address = address or ""
        self.detach = detach
        self.ping_port = 0
        self.process: ServerProcess | None = None

    @property
    def log(self) -> Path:
        return self.directory / "traefik.log"

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    @property
    def state_file(self) -> Path:
        return self.directory / STATE_FILE

    def url(self, listener: str) -> str:
        """``http://<address>:<port>`` of an HTTP listener."""
        return f"http://{self.address}:{self.listeners[listener]}"

    def argv(self, executable: Path) -> list[str]:
        args = [
            str(executable),
            "--global.checkNewVersion=false",
            "--global.sendAnonymousUsage=false",
            "--log.level=INFO",
            "--log.format=json",
            "--accessLog=true",
            "--accessLog.format=json",
            f"--accessLog.filePath={self.access_log}",
            f"--entryPoints.traefik.address=127.0.0.1:{self.ping_port}",
            "--ping=true",
            "--ping.entryPoint=traefik",
            "--providers.kubernetesGateway=true",
            f"--providers.kubernetesGateway.endpoint={self.server}",
            f"--providers.kubernetesGateway.certAuthFilePath={self.ca_file}",
            f"--providers.kubernetesGateway.token={self.directory / 'token'}",
            "--providers.kubernetesGateway.experimentalChannel=true",
            f"--providers.kubernetesGateway.statusAddress.ip={self.address}",
        ]
        for name, port in sorted(self.listeners.items()):
            args.append(f"--entryPoints.{name}.address={self.address}:{port}")
        return args

    def start(self, timeout: float = 60.0) -> None:
        """Start Traefik and wait until it answers its ping endpoint."""
        executable = binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        if not self.address:
            self.address = free_loopback_address(list(self.listeners.values()))
        token_file = self.directory / "token"
        token_file.unlink(missing_ok=True)
        with os.fdopen(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(self.token)
        self.ping_port = free_port()
        self.process = start_process("traefik", self.argv(executable), self.log, detach=self.detach)
        if self.detach:
            self._write_state()
        self.await_ready(timeout, TraefikError)

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.ping_port}/ping")

    def forget(self) -> None:
        self.state_file.unlink(missing_ok=True)

    # state for the command line --------------------------------------------------------
    def _write_state(self) -> None:
        assert self.process is not None
        state = {
            "server": self.server,
            "address": self.address,
            "listeners": self.listeners,
            "ping_port": self.ping_port,
            "pid": self.process.pid,
            "executable": str(self.process.executable),
            "log": str(self.log),
        }
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(self.state_file)

    @classmethod
    def attach(cls, directory: Path) -> Traefik:
        """The Traefik a previous ``start`` (in any process) left running for ``directory``."""
        directory = directory.resolve()
        traefik = cls(directory, "", Path(), "", detach=True)
        try:
            state = json.loads((directory / STATE_FILE).read_text())
        except FileNotFoundError:
            return traefik
        traefik.server = state["server"]
        traefik.address = state["address"]
        traefik.listeners = {str(k): int(v) for k, v in state["listeners"].items()}
        traefik.ping_port = int(state["ping_port"])
        traefik.process = ServerProcess(
            "traefik", Path(state["executable"]), int(state["pid"]), Path(state["log"])
        )
        return traefik

    def status(self) -> dict[str, Any]:
        running = self.running()
        return {
            "directory": str(self.directory),
            "traefik_version": TRAEFIK_VERSION,
            "running": running,
            "ready": running and self.ready(),
            "server": self.server or None,
            "listeners": {name: self.url(name) for name in self.listeners} if running else {},
            "log": str(self.log),
        }


# command line ----------------------------------------------------------------------------
def _listener(text: str) -> tuple[str, int]:
    name, _, port = text.partition("=")
    if not name or not port.isdigit():
        msg = f"expected NAME=PORT, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return name, int(port)


def _cmd_start(args: argparse.Namespace) -> int:
    traefik = Traefik.attach(args.dir)
    if traefik.running():
        print(f"already running (see {traefik.state_file})", file=sys.stderr)
        print(traefik.state_file)
        return 0
    traefik.stop()  # a stale state file
    kubeconfig = args.kubeconfig.resolve()
    if not kubeconfig.is_file():
        raise TraefikError(f"kubeconfig {kubeconfig} does not exist; start the cluster first")
    kube = KubeApi.from_kubeconfig(kubeconfig)
    args.dir.mkdir(parents=True, exist_ok=True)
    ca_file = args.dir.resolve() / "ca.crt"
    ca_file.write_text(_ca_pem(kubeconfig))
    try:
        token = install(kube, args.class_name)
    except KubeApiError as exc:
        msg = f"cannot install Traefik's RBAC and GatewayClass (Gateway API CRDs missing?): {exc}"
        raise TraefikError(msg) from None
    listeners = dict(args.listener) if args.listener else DEFAULT_LISTENERS
    traefik = Traefik(
        args.dir, kube.server, ca_file, token, listeners=listeners, address=args.address,
        detach=True,
    )  # fmt: skip
    began = time.monotonic()
    traefik.start(timeout=args.timeout)
    print(f"traefik ready in {time.monotonic() - began:.1f}s; log {traefik.log}", file=sys.stderr)
    for name in sorted(listeners):
        print(f"  {name:10} {traefik.url(name)}", file=sys.stderr)
    print(traefik.state_file)
    return 0


def _ca_pem(kubeconfig: Path) -> str:
    config = yaml.safe_load(kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    if cluster.get("certificate-authority"):
        return Path(kubeconfig.parent, str(cluster["certificate-authority"])).read_text()
    return base64.b64decode(cluster["certificate-authority-data"]).decode()


def main(argv: Sequence[str] | None = None) -> int:
    commands = lifecycle_parser(
        "python -m stacktools traefik",
        f"Traefik {TRAEFIK_VERSION} as the Gateway API data plane of a cluster.",
        what="traefik",
        start_timeout=60.0,
        dir_help="traefik's state and log folder",
    )
    commands.start.add_argument(
        "--kubeconfig", type=Path, required=True, help="the cluster's (admin) kubeconfig"
    )
    commands.start.add_argument(
        "--listener",
        type=_listener,
        action="append",
        help="entry point NAME=PORT, one per Gateway listener (default: the gateway role's)",
    )
    commands.start.add_argument("--address", help="listen address (default: a free 127.x.y.z)")
    commands.start.add_argument("--class-name", default=CLASS_NAME, help="GatewayClass name")
    handlers = {"start": _cmd_start, **state_handlers(Traefik.attach, ensure_binary)}
    return run(commands, handlers, (TraefikError, BuildError, KubeApiError, OSError), argv)


if __name__ == "__main__":
    sys.exit(main())
