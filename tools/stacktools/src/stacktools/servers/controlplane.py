"""A real, node-less Kubernetes control plane on loopback: etcd, kube-apiserver and
kube-controller-manager built from tools/controlplane (Kubernetes v1.36.3).

Everything lives in one directory: ``pki/`` (generated certificates, reused on restart),
``etcd/`` (data), ``logs/`` (one log per component), ``kubeconfig`` (admin, system:masters)
and ``state.json`` (ports and PIDs, so another process can stop the cluster).

Command line (used by the Molecule ``controlplane`` scenario)::

    python -m stacktools controlplane start  --dir DIR   # prints the kubeconfig path
    python -m stacktools controlplane status --dir DIR   # JSON; exit 0 only when ready
    python -m stacktools controlplane stop   --dir DIR [--wipe]
    python -m stacktools controlplane build              # build or reuse the binaries
"""

from __future__ import annotations

import argparse
import json
import shutil
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stacktools.builds.controlplane import (
    KUBERNETES_VERSION,
    Binaries,
    binaries,
    ensure_binaries,
)
from stacktools.builds.gobuild import BuildError
from stacktools.cli import lifecycle_parser, print_status, run
from stacktools.cluster.kubeconfig import CLUSTER_NAME as KUBECONFIG_CLUSTER
from stacktools.cluster.kubeconfig import write_kubeconfig
from stacktools.cluster.pki import (
    FRONT_PROXY_CLIENT,
    CertPaths,
    Pki,
    ensure_client_cert,
    ensure_pki,
)
from stacktools.net import free_port, wait_for_port
from stacktools.servers.process import ManagedServer, ServerProcess, start_process

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first address of SERVICE_CIDR: the `kubernetes` Service
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
CLUSTER_NAME = KUBECONFIG_CLUSTER
STATE_FILE = "state.json"
# Client identities of node mode: certificate stem -> (user, group). The bootstrap RBAC
# policy of kube-apiserver binds system:kube-scheduler's role to that user.
CLIENTS = {
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
    "kube-scheduler": ("system:kube-scheduler", None),
}
# Node mode: how long the HorizontalPodAutoscaler waits before it scales down (the default
# is 5 min); shortened so that a test sees a scale-down within minutes.
HPA_DOWNSCALE_STABILIZATION = "30s"


class ControlPlaneError(RuntimeError):
    """The control plane did not start or is not running; the message says why."""


def apiserver_args(
    binaries: Binaries, pki: Pki, etcd_port: int, port: int, node_address: str | None = None
) -> list[str]:
    """kube-apiserver's flags; ``node_address``: where nodes reach it (see ControlPlane)."""
    args = [
        str(binaries.kube_apiserver),
        f"--etcd-servers=http://127.0.0.1:{etcd_port}",
        "--storage-backend=etcd3",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--requestheader-client-ca-file={pki.front_proxy_ca.cert}",
        f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
        f"--proxy-client-key-file={pki.front_proxy_client.key}",
        f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
        f"--service-account-key-file={pki.service_account_pub}",
        f"--service-account-signing-key-file={pki.service_account_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
    ]
    if node_address is None:
        return [
            *args,
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            # No kubelets exist, so the Node authorizer would have nothing to do.
            "--authorization-mode=RBAC",
            # The endpoint reconciler would publish 127.0.0.1 as the `kubernetes` Service's
            # endpoint, which Endpoints validation rejects (loopback); nothing in-cluster needs it.
            "--endpoint-reconciler-type=none",
        ]
    kubelet_client = pki_client(pki, "apiserver-kubelet-client")
    return [
        *args,
        # Loopback for the tests' kubeconfig and node_address for the node: the node lives in
        # its own network namespace and reaches this machine only through its veth link.
        "--bind-address=0.0.0.0",
        # The `kubernetes` Service's endpoint, so pods reach the API server too.
        f"--advertise-address={node_address}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        # To the kubelet (logs, exec, port-forward), trusting only this cluster's CA.
        f"--kubelet-client-certificate={kubelet_client.cert}",
        f"--kubelet-client-key={kubelet_client.key}",
        f"--kubelet-certificate-authority={pki.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP",
        # Aggregated APIs (metrics-server) are reached at their pods' addresses, which this
        # machine routes to the node, never at Service IPs, which exist only inside the node.
        "--enable-aggregator-routing=true",
    ]


def pki_client(pki: Pki, stem: str) -> CertPaths:
    """The certificate files of one of the node-mode client identities (see CLIENTS)."""
    folder = pki.ca.cert.parent
    common_name, organization = CLIENTS[stem]
    return ensure_client_cert(folder, pki.ca, stem, common_name, organization)


def controller_manager_args(
    binaries: Binaries, pki: Pki, kubeconfig: Path, port: int, *, node_mode: bool = False
) -> list[str]:
    stabilization = HPA_DOWNSCALE_STABILIZATION
    node_args = [f"--horizontal-pod-autoscaler-downscale-stabilization={stabilization}"]
    return [
        str(binaries.kube_controller_manager),
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--client-ca-file={pki.ca.cert}",
        f"--root-ca-file={pki.ca.cert}",
        f"--service-account-private-key-file={pki.service_account_key}",
        f"--cluster-signing-cert-file={pki.ca.cert}",
        f"--cluster-signing-key-file={pki.ca.key}",
        # Each controller acts as its own service account, as in kubeadm clusters, so RBAC
        # for the built-in controllers is exercised for real.
        "--use-service-account-credentials=true",
        "--controllers=*",
        "--leader-elect=false",
        f"--cluster-name={CLUSTER_NAME}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--profiling=false",
        *(node_args if node_mode else []),
    ]


def scheduler_args(binaries: Binaries, pki: Pki, kubeconfig: Path, port: int) -> list[str]:
    return [
        str(binaries.kube_scheduler),
        f"--tls-cert-file={pki.serving.cert}",
        f"--tls-private-key-file={pki.serving.key}",
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        "--leader-elect=false",
        "--profiling=false",
    ]


class ControlPlane(ManagedServer):
    """etcd + kube-apiserver + kube-controller-manager with their state in ``directory``.

    ``detach=False`` (the pytest fixture): the servers die with this Python process.
    ``detach=True`` (the CLI): they keep running; ``ControlPlane.attach(directory)`` finds
    them again from ``state.json``.

    ``node_address`` (node mode, for stacktools.servers.node): the address of this machine on
    the node's link. The API server then also listens there and advertises it as the
    ``kubernetes`` Service's endpoint, authorizes kubelets (Node authorizer, NodeRestriction),
    talks to them with its own client certificate, and kube-scheduler runs, so pods get a node.
    Without it nothing schedules pods: they stay Pending, as the L3 tests expect.
    """

    def __init__(
        self, directory: Path, *, detach: bool = False, node_address: str | None = None
    ) -> None:
        self.directory = directory.resolve()
        self.detach = detach
        self.node_address = node_address
        self.processes: list[ServerProcess] = []
        self.ports: dict[str, int] = {}
        self.started_in = 0.0  # seconds the last start() took
        self._pki: Pki | None = None
        self._ssl: ssl.SSLContext | None = None

    # paths -----------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.directory / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.directory / STATE_FILE

    @property
    def log_dir(self) -> Path:
        return self.directory / "logs"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    @property
    def pki(self) -> Pki:
        if self._pki is None:
            extra = (self.node_address,) if self.node_address else ()
            self._pki = ensure_pki(self.directory / "pki", SERVICE_IP, extra)
        return self._pki

    # lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> None:
        """Start the servers and return once the API server is ready and the controller-manager
        is healthy and working (it has created the `default` ServiceAccount); in node mode
        also once kube-scheduler is healthy.
        """
        if self.running():
            return
        built = binaries()
        began = time.monotonic()
        self.directory.mkdir(parents=True, exist_ok=True)
        pki = self.pki
        self.ports = {
            "etcd": free_port(),
            "etcd-peer": free_port(),
            "kube-apiserver": free_port(),
            "kube-controller-manager": free_port(),
        }
        if self.node_address:
            self.ports["kube-scheduler"] = free_port()
        write_kubeconfig(self.kubeconfig, self.server, pki.ca.cert, pki.admin, "admin")
        cm_kubeconfig = self.directory / "pki" / "kube-controller-manager.kubeconfig"
        write_kubeconfig(
            cm_kubeconfig,
            self.server,
            pki.ca.cert,
            pki.controller_manager,
            "system:kube-controller-manager",
        )
        try:
            self._launch(
                "etcd",
                [
                    str(built.etcd),
                    f"--data-dir={self.directory / 'etcd'}",
                    f"--client-port={self.ports['etcd']}",
                    f"--peer-port={self.ports['etcd-peer']}",
                    # Throw-away test data: skipping fsync keeps etcd fast on a busy disk.
                    "--unsafe-no-fsync",
                ],
            )
            self._wait(
                "etcd", lambda: _port_open(self.ports["etcd"]), began + timeout, "accepting clients"
            )
            self._launch(
                "kube-apiserver",
                apiserver_args(
                    built,
                    pki,
                    self.ports["etcd"],
                    self.ports["kube-apiserver"],
                    self.node_address,
                ),
            )
            self._wait(
                "kube-apiserver",
                lambda: self.get("/readyz") == 200,
                began + timeout,
                "ready (/readyz)",
            )
            # Only now: started earlier, it exits because the RBAC bindings that let it read
            # kube-system/extension-apiserver-authentication do not exist yet.
            self._launch(
                "kube-controller-manager",
                controller_manager_args(
                    built,
                    pki,
                    cm_kubeconfig,
                    self.ports["kube-controller-manager"],
                    node_mode=self.node_address is not None,
                ),
            )
            cm_health = f"https://127.0.0.1:{self.ports['kube-controller-manager']}/healthz"
            self._wait(
                "kube-controller-manager",
                lambda: self.get(cm_health) == 200,
                began + timeout,
                "healthy (/healthz)",
            )
            self._wait(
                "kube-controller-manager",
                lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default") == 200,
                began + timeout,
                "working (ServiceAccount default/default created)",
            )
            if self.node_address:
                self._start_scheduler(built, began + timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM each server (controller-manager, API server, etcd), SIGKILL after timeout."""
        for process in reversed(self.processes):
            process.stop(timeout)
        self.processes = []
        self.state_file.unlink(missing_ok=True)

    def running(self) -> bool:
        return bool(self.processes) and all(p.alive() for p in self.processes)

    def wipe(self) -> None:
        """Delete the cluster's data (etcd); keep certificates and logs."""
        if self.running():
            msg = "stop the control plane before wiping its data"
            raise ControlPlaneError(msg)
        shutil.rmtree(self.directory / "etcd", ignore_errors=True)

    @classmethod
    def attach(cls, directory: Path) -> ControlPlane:
        """The control plane a previous ``start`` (in any process) left in ``directory``."""
        plane = cls(directory, detach=True)
        try:
            state = json.loads(plane.state_file.read_text())
        except FileNotFoundError:
            return plane
        plane.ports = {str(k): int(v) for k, v in state["ports"].items()}
        plane.processes = [
            ServerProcess(p["name"], Path(p["executable"]), int(p["pid"]), Path(p["log"]))
            for p in state["processes"]
        ]
        return plane

    def status(self) -> dict[str, Any]:
        alive = {p.name: p.alive() for p in self.processes}
        ready = bool(alive) and all(alive.values()) and self.get("/readyz") == 200
        return {
            "directory": str(self.directory),
            "kubernetes_version": KUBERNETES_VERSION,
            "running": alive,
            "ready": ready,
            "server": self.server if self.ports else None,
            "kubeconfig": str(self.kubeconfig) if self.ports else None,
            "logs": str(self.log_dir),
        }

    # HTTP ------------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        """TLS as the admin user, trusting only this cluster's CA."""
        if self._ssl is None:
            pki = self.pki
            self._ssl = ssl.create_default_context(cafile=str(pki.ca.cert))
            self._ssl.load_cert_chain(str(pki.admin.cert), str(pki.admin.key))
        return self._ssl

    def get(self, path_or_url: str, timeout: float = 3.0) -> int:
        """HTTP status of a GET as admin (0 when nothing answers)."""
        url = path_or_url if path_or_url.startswith("https://") else self.server + path_or_url
        try:
            with urllib.request.urlopen(url, context=self.ssl_context(), timeout=timeout) as r:  # noqa: S310 - https only
                return int(r.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except (OSError, ssl.SSLError):
            return 0

    # internals -------------------------------------------------------------------------
    def _start_scheduler(self, built: Binaries, deadline: float) -> None:
        kubeconfig = self.directory / "pki" / "kube-scheduler.kubeconfig"
        client = pki_client(self.pki, "kube-scheduler")
        write_kubeconfig(kubeconfig, self.server, self.pki.ca.cert, client, "system:kube-scheduler")
        port = self.ports["kube-scheduler"]
        self._launch("kube-scheduler", scheduler_args(built, self.pki, kubeconfig, port))
        self._wait(
            "kube-scheduler",
            lambda: self.get(f"https://127.0.0.1:{port}/healthz") == 200,
            deadline,
            "healthy (/healthz)",
        )

    def _launch(self, name: str, argv: list[str]) -> None:
        log = self.log_dir / f"{name}.log"
        self.processes.append(start_process(name, argv, log, detach=self.detach))
        self._write_state()

    def _write_state(self) -> None:
        state = {
            "kubernetes_version": KUBERNETES_VERSION,
            "server": self.server,
            "kubeconfig": str(self.kubeconfig),
            "ports": self.ports,
            "processes": [
                {"name": p.name, "executable": str(p.executable), "pid": p.pid, "log": str(p.log)}
                for p in self.processes
            ],
        }
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(self.state_file)

    def _wait(self, name: str, check: Callable[[], bool], deadline: float, what: str) -> None:
        while not check():
            for process in self.processes:
                if not process.alive():
                    msg = (
                        f"{process.name} exited while waiting for {name} to be {what}; "
                        f"end of {process.log}:\n{process.log_tail()}"
                    )
                    raise ControlPlaneError(msg)
            if time.monotonic() > deadline:
                log = self.log_dir / f"{name}.log"
                tail = next((p.log_tail() for p in self.processes if p.name == name), "")
                msg = f"{name} was not {what} in time; end of {log}:\n{tail}"
                raise ControlPlaneError(msg)
            time.sleep(0.25)


def _port_open(port: int) -> bool:
    try:
        wait_for_port(port, timeout=0)
    except TimeoutError:
        return False
    return True


# command line ----------------------------------------------------------------------------
def _cmd_start(args: argparse.Namespace) -> int:
    plane = ControlPlane.attach(args.dir)
    if plane.running():
        print(f"already running (see {plane.state_file})", file=sys.stderr)
    else:
        plane.stop()  # clears a stale state file whose processes are gone
        plane = ControlPlane(args.dir, detach=True)
        plane.start(timeout=args.timeout)
        print(f"control plane ready in {plane.started_in:.1f}s: {plane.server}", file=sys.stderr)
    print(plane.kubeconfig)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    plane = ControlPlane.attach(args.dir)
    plane.stop(timeout=args.timeout)
    if args.wipe:
        plane.wipe()
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    return print_status(ControlPlane.attach(args.dir).status())


def _cmd_build(_: argparse.Namespace) -> int:
    print(ensure_binaries().kube_apiserver.parent)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    commands = lifecycle_parser(
        "python -m stacktools controlplane",
        f"Local node-less Kubernetes {KUBERNETES_VERSION} control plane.",
        what="the servers",
        start_timeout=180.0,
        dir_help="the cluster's directory",
    )
    commands.stop.add_argument("--wipe", action="store_true", help="also delete the etcd data")
    handlers = {"start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status, "build": _cmd_build}
    return run(commands, handlers, (ControlPlaneError, BuildError), argv)


if __name__ == "__main__":
    sys.exit(main())
