"""A real Kubernetes node on this machine, joined to its own local control plane.

containerd (with runc and the CNI plugins), the kubelet and kube-proxy run in the node's own
namespaces (stacktools.servers.nodenet); the control plane (stacktools.servers.controlplane, in
node mode) runs on this machine and is reached over the node's link. Everything is built by the
set-up step (``make prepare``): Kubernetes v1.36.3 from tools/controlplane, containerd, runc,
the CNI plugins, CoreDNS, metrics-server from their Go modules, pause from pause.c.

What ``start`` does, in order:

1. claims a node slot, makes the namespaces and the link, gives the node private ``/run``,
   ``/var/lib`` and ``/var/log`` (nothing it writes lands in the machine's own);
2. starts the control plane in node mode (advertising this machine's end of the link);
3. starts containerd and imports the images (the node's own, see
   stacktools.builds.node_images, and any given, e.g. the services' images): pull policy
   ``IfNotPresent`` then finds them, nothing is pulled from a registry;
4. starts the kubelet (client certificate ``system:node:stack-node`` in ``system:nodes``,
   serving certificate for the node's address, both from the cluster's CA) and kube-proxy
   (``system:kube-proxy``, nftables mode), waits for the Node to be Ready;
5. deploys CoreDNS (``kube-dns`` at 10.96.0.10) and metrics-server and waits for them.

``stop`` ends the node's namespace (every container with it), then the control plane.

Command line::

    python -m stacktools node start  --dir DIR [--image ARCHIVE ...]  # prints the kubeconfig
    python -m stacktools node status --dir DIR
    python -m stacktools node stop   --dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from stacktools.builds import cni, containerd, node_images, pause, runc
from stacktools.builds.controlplane import KUBERNETES_VERSION, binaries
from stacktools.builds.gobuild import BuildError
from stacktools.cli import lifecycle_parser, print_status, run
from stacktools.cluster import addons, nodeconfig
from stacktools.cluster.kubeconfig import write_kubeconfig
from stacktools.cluster.pki import CertPaths, ensure_client_cert, ensure_serving_cert
from stacktools.servers.controlplane import ControlPlane, ControlPlaneError
from stacktools.servers.nodenet import NodeNamespaces, NodeNetworkError, Slot
from stacktools.servers.process import ManagedServer, ServerProcess, start_process

NODE_NAME = "stack-node"
STATE_FILE = "state.json"
# Machine folders that get a private tmpfs inside the node (containerd's shim sockets under
# /run/containerd, CNI's result cache under /var/lib/cni, the kubelet's /var/log/containers).
PRIVATE_FOLDERS = ("/run", "/var/lib", "/var/log")


# inotify instances a node and its control plane take (measured: kube-apiserver 6,
# kube-controller-manager 7, kubelet 6, containerd 2, kube-scheduler, kube-proxy and
# metrics-server 1 each), with some to spare. The kernel's limit is per user
# (fs.inotify.max_user_instances, often 128): past it the kubelet cannot watch its CA file and
# containerd's CRI plugin does not load, and the node fails with errors that do not say why.
INOTIFY_NEEDED = 30


class NodeError(RuntimeError):
    """The node did not start or is not running; the message says why and where to look."""


def inotify_instances_in_use(uid: int) -> int:
    """The inotify instances open in the processes of ``uid`` that this machine shows."""
    count = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if proc.stat().st_uid != uid:
                continue
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) == "anon_inode:inotify":
                    count += 1
        except OSError:
            continue  # the process ended, or its fds are not ours to read
    return count


def check_inotify(needed: int = INOTIFY_NEEDED) -> None:
    """Fail naming fs.inotify.max_user_instances when a node would not fit under it."""
    limit_file = Path("/proc/sys/fs/inotify/max_user_instances")
    try:
        limit = int(limit_file.read_text())
    except (OSError, ValueError):
        return
    used = inotify_instances_in_use(os.getuid())
    if limit - used < needed:
        msg = (
            f"only {limit - used} of fs.inotify.max_user_instances={limit} inotify instances "
            f"are free for this user ({used} in use); a node and its control plane need about "
            f"{needed}. Stop other nodes or control planes, or raise the limit "
            "(sysctl -w fs.inotify.max_user_instances=512)."
        )
        raise NodeError(msg)


class Node(ManagedServer):
    """One node and its control plane, with all state under ``directory``.

    ``images``: more OCI/docker archives to import (the services' images).
    ``detach=False`` (the pytest fixture): everything dies with this Python process.
    """

    def __init__(
        self, directory: Path, *, images: Sequence[Path] = (), detach: bool = False
    ) -> None:
        self.directory = directory.resolve()
        self.layout = nodeconfig.NodeLayout(self.directory / "node")
        self.extra_images = list(images)
        self.detach = detach
        self.namespaces: NodeNamespaces | None = None
        self.plane: ControlPlane | None = None
        self.processes: list[ServerProcess] = []
        self.slot: Slot | None = None
        self.timings: dict[str, float] = {}

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig of the node's control plane."""
        return self.directory / "controlplane" / "kubeconfig"

    @property
    def state_file(self) -> Path:
        return self.directory / STATE_FILE

    # lifecycle -------------------------------------------------------------------------
    def start(self, timeout: float = 600.0) -> None:
        began = time.monotonic()
        deadline = began + timeout
        check_inotify()
        built = binaries()
        runtime = containerd.binaries()
        runc_binary = runc.binary()
        cni_bin = cni.directory()
        own_images = node_images.images()
        pause_binary = pause.binary()
        self.layout.logs.mkdir(parents=True, exist_ok=True)
        try:
            self.namespaces = NodeNamespaces(
                self.layout.directory, pause_binary, detach=self.detach
            )
            self.slot = slot = self.namespaces.start()
            self._private_folders()
            self._step("namespaces", began)

            self.plane = ControlPlane(
                self.directory / "controlplane", detach=self.detach, node_address=slot.host_address
            )
            self.plane.start(timeout=max(deadline - time.monotonic(), 30.0))
            self._write_state()
            self._step("control plane", began)

            self._write_configs(runtime, runc_binary, cni_bin, own_images["pause"].ref)
            self._launch(
                "containerd",
                [str(runtime["containerd"]), f"--config={self.layout.containerd_config}"],
            )
            self._wait("containerd", self.layout.containerd_socket.exists, deadline, "listening")
            self.import_images([i.archive for i in own_images.values()])
            self.import_images(self.extra_images)
            self._step("containerd and images", began)

            self._launch("kubelet", self._kubelet_args(built.kubelet))
            self._launch(
                "kube-proxy", [str(built.kube_proxy), f"--config={self.layout.kube_proxy_config}"]
            )
            self._wait("kubelet", self._node_ready, deadline, f"Ready (Node {NODE_NAME})")
            self._step("kubelet Ready", began)

            addons.deploy(self.kubectl, own_images, deadline - time.monotonic())
            self._step("CoreDNS and metrics-server", began)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 20.0) -> None:
        """End the node's namespace (and every container), then the control plane."""
        if self.namespaces is not None:
            self.namespaces.stop(timeout)
        for process in self.processes:
            process.stop(timeout)
        self.processes = []
        if self.plane is not None:
            self.plane.stop(timeout)
        self.state_file.unlink(missing_ok=True)

    def running(self) -> bool:
        return (
            self.namespaces is not None
            and self.namespaces.alive()
            and self.plane is not None
            and self.plane.running()
            and all(p.alive() for p in self.processes)
        )

    # tools for tests -------------------------------------------------------------------
    def kubectl(self, *args: str, timeout: float = 120.0, stdin: str | None = None) -> str:
        """Run kubectl (built with the cluster) as admin; raise NodeError naming its output."""
        command = [str(binaries().kubectl), f"--kubeconfig={self.kubeconfig}", *args]
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, input=stdin, check=False
        )
        if result.returncode != 0:
            msg = f"kubectl {' '.join(args)} failed: {result.stderr.strip() or result.stdout}"
            raise NodeError(msg)
        return result.stdout

    def inside(self, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a command in the node's namespaces (e.g. ``nft list ruleset``)."""
        if self.namespaces is None:
            msg = "the node is not running"
            raise NodeError(msg)
        return subprocess.run(
            [*self.namespaces.enter(), *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def spawn_inside(self, *argv: str) -> subprocess.Popen[str]:
        """Start a command in the node's namespaces without waiting (e.g. a load generator)."""
        if self.namespaces is None:
            msg = "the node is not running"
            raise NodeError(msg)
        return subprocess.Popen(
            [*self.namespaces.enter(), *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def logs(self, name: str, chars: int = 4000) -> str:
        """The end of one component's log (containerd, kubelet, kube-proxy)."""
        path = self.layout.logs / f"{name}.log"
        try:
            return path.read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "(no log)"

    # internals -------------------------------------------------------------------------
    def _step(self, name: str, began: float) -> None:
        self.timings[name] = time.monotonic() - began
        print(f"node: {name} after {self.timings[name]:.1f} s", file=sys.stderr, flush=True)

    def _private_folders(self) -> None:
        assert self.namespaces is not None
        for folder in PRIVATE_FOLDERS:
            self.namespaces.run_inside(
                ["mount", "-t", "tmpfs", "-o", "mode=0755,size=64m", "node-tmpfs", folder],
                f"a private {folder} for the node",
            )

    def _certs(self) -> tuple[CertPaths, CertPaths, CertPaths]:
        assert self.plane is not None
        assert self.slot is not None
        pki = self.plane.pki
        folder = self.layout.pki
        folder.mkdir(parents=True, exist_ok=True)
        kubelet_client = ensure_client_cert(
            folder, pki.ca, "kubelet-client", f"system:node:{NODE_NAME}", "system:nodes"
        )
        kubelet_serving = ensure_serving_cert(
            folder,
            pki.ca,
            "kubelet-serving",
            f"system:node:{NODE_NAME}",
            ips=[self.slot.node_address],
            names=[NODE_NAME],
        )
        proxy_client = ensure_client_cert(folder, pki.ca, "kube-proxy", "system:kube-proxy")
        return kubelet_client, kubelet_serving, proxy_client

    def _write_configs(
        self, runtime: dict[str, Path], runc_binary: Path, cni_bin: Path, sandbox: str
    ) -> None:
        assert self.plane is not None
        assert self.slot is not None
        layout, slot = self.layout, self.slot
        for folder in (
            layout.containerd_root,
            layout.containerd_state,
            layout.containerd_socket.parent,
            layout.cni_conf_dir,
            layout.cni_data_dir,
            layout.kubelet_root,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        layout.containerd_config.write_text(
            nodeconfig.containerd_config(
                layout,
                shim=runtime["containerd-shim-runc-v2"],
                runc=runc_binary,
                cni_bin_dir=cni_bin,
                sandbox_image=sandbox,
            )
        )
        (layout.cni_conf_dir / "10-stack-pods.conflist").write_text(
            nodeconfig.cni_config(layout, slot.pod_cidr)
        )
        layout.resolv_conf.write_text(nodeconfig.resolv_conf())
        kubelet_client, kubelet_serving, proxy_client = self._certs()
        server = f"https://{slot.host_address}:{self.plane.ports['kube-apiserver']}"
        ca = self.plane.pki.ca.cert
        write_kubeconfig(
            layout.pki / "kubelet.kubeconfig",
            server,
            ca,
            kubelet_client,
            f"system:node:{NODE_NAME}",
        )
        write_kubeconfig(
            layout.pki / "kube-proxy.kubeconfig", server, ca, proxy_client, "system:kube-proxy"
        )
        layout.kubelet_config.write_text(
            nodeconfig.kubelet_config(
                layout,
                node_address=slot.node_address,
                cgroup_root=slot.cgroup_parent,
                ca=ca,
                serving_cert=kubelet_serving.cert,
                serving_key=kubelet_serving.key,
            )
        )
        layout.kube_proxy_config.write_text(
            nodeconfig.kube_proxy_config(
                kubeconfig=layout.pki / "kube-proxy.kubeconfig",
                node_name=NODE_NAME,
                pod_cidr=slot.pod_cidr,
            )
        )

    def _kubelet_args(self, kubelet: Path) -> list[str]:
        assert self.slot is not None
        return [
            str(kubelet),
            f"--config={self.layout.kubelet_config}",
            f"--kubeconfig={self.layout.pki / 'kubelet.kubeconfig'}",
            f"--root-dir={self.layout.kubelet_root}",
            f"--cert-dir={self.layout.pki}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={self.slot.node_address}",
            "--node-labels=gateway-api-stack/node=true",
        ]

    def _launch(self, name: str, argv: list[str]) -> None:
        assert self.namespaces is not None
        env = {"PATH": f"{Path(argv[0]).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"}
        self.processes.append(
            start_process(
                name,
                [*self.namespaces.enter(), *argv],
                self.layout.logs / f"{name}.log",
                detach=self.detach,
                env=env,
            )
        )
        self._write_state()

    def import_images(self, archives: Sequence[Path]) -> None:
        """Import image archives into containerd's ``k8s.io`` namespace (the CRI's), pinned so
        that the kubelet's image garbage collection never removes them."""
        base = [
            str(containerd.binaries()["ctr"]),
            f"--address={self.layout.containerd_socket}",
            "--namespace=k8s.io",
        ]
        for archive in archives:
            if not archive.is_file():
                msg = f"image archive {archive} does not exist: run `make prepare`"
                raise NodeError(msg)
            result = subprocess.run(
                [*base, "images", "import", str(archive)],
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            if result.returncode != 0:
                msg = f"importing {archive} into the node failed: {result.stderr.strip()}"
                raise NodeError(msg)
            for line in result.stdout.splitlines():
                # ctr prints "Saved <ref> ..." or "unpacking <ref> (sha256:...)...done"
                words = line.split()
                if len(words) >= 2 and words[0] in {"unpacking", "Saved"}:
                    subprocess.run(
                        [*base, "images", "label", words[1], "io.cri-containerd.pinned=pinned"],
                        capture_output=True,
                        check=False,
                    )

    def _node_ready(self) -> bool:
        try:
            out = self.kubectl("get", "node", NODE_NAME, "-o", "json", timeout=10)
        except (NodeError, subprocess.TimeoutExpired):
            return False
        conditions = json.loads(out).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _wait(self, name: str, check: Callable[[], bool], deadline: float, what: str) -> None:
        while not check():
            for process in self.processes:
                if not process.alive():
                    msg = (
                        f"{process.name} exited while waiting for {name} to be {what}; "
                        f"end of {process.log}:\n{process.log_tail()}"
                    )
                    raise NodeError(msg)
            if time.monotonic() > deadline:
                msg = f"{name} was not {what} in time; end of its log:\n{self.logs(name)}"
                raise NodeError(msg)
            time.sleep(0.5)

    def _write_state(self) -> None:
        assert self.namespaces is not None
        assert self.slot is not None
        state = {
            "slot": self.slot.index,
            "init_pid": self.namespaces.init_pid,
            "kubeconfig": str(self.kubeconfig),
            "processes": [
                {"name": p.name, "executable": str(p.executable), "pid": p.pid, "log": str(p.log)}
                for p in [*(filter(None, [self.namespaces.anchor])), *self.processes]
            ],
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(self.state_file)

    @classmethod
    def attach(cls, directory: Path) -> Node:
        """The node a previous ``start`` (in any process) left running in ``directory``."""
        node = cls(directory, detach=True)
        try:
            state = json.loads(node.state_file.read_text())
        except FileNotFoundError:
            return node
        node.slot = Slot(int(state["slot"]))
        processes = [
            ServerProcess(p["name"], Path(p["executable"]), int(p["pid"]), Path(p["log"]))
            for p in state["processes"]
        ]
        node.namespaces = NodeNamespaces(node.layout.directory, pause.binary_path(), detach=True)
        node.namespaces.slot = node.slot
        node.namespaces.init_pid = int(state["init_pid"])
        node.namespaces.anchor = processes[0] if processes else None
        node.processes = processes[1:]
        node.plane = ControlPlane.attach(directory / "controlplane")
        return node

    def status(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "kubernetes_version": KUBERNETES_VERSION,
            "node": NODE_NAME,
            "slot": self.slot.index if self.slot else None,
            "running": {p.name: p.alive() for p in self.processes},
            "ready": self.running() and self._node_ready(),
            "kubeconfig": str(self.kubeconfig),
            "logs": str(self.layout.logs),
        }


# command line ----------------------------------------------------------------------------
def _cmd_start(args: argparse.Namespace) -> int:
    node = Node.attach(args.dir)
    if node.running():
        print(f"already running (see {node.state_file})", file=sys.stderr)
    else:
        node.stop()
        node = Node(args.dir, images=args.image, detach=True)
        node.start(timeout=args.timeout)
        print(f"node {NODE_NAME} ready: {node.timings}", file=sys.stderr)
    print(node.kubeconfig)
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    Node.attach(args.dir).stop(timeout=args.timeout)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    return print_status(Node.attach(args.dir).status())


def _cmd_build(_: argparse.Namespace) -> int:
    print("the node's parts are built by `python -m stacktools prepare`", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    commands = lifecycle_parser(
        "python -m stacktools node",
        f"A Kubernetes {KUBERNETES_VERSION} node (containerd, kubelet, kube-proxy) joined to "
        "its own local control plane.",
        what="the node and its control plane",
        start_timeout=600.0,
        dir_help="the node's directory",
    )
    commands.start.add_argument(
        "--image", type=Path, action="append", default=[], help="an image archive to import"
    )
    handlers = {"start": _cmd_start, "stop": _cmd_stop, "status": _cmd_status, "build": _cmd_build}
    return run(
        commands, handlers, (NodeError, NodeNetworkError, ControlPlaneError, BuildError), argv
    )


if __name__ == "__main__":
    sys.exit(main())
