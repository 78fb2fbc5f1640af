"""istiod (Istio's control plane, ``pilot-discovery``) outside a cluster, against a kubeconfig.

It is the Gateway API controller for GatewayClass ``istio``: with it the local control plane
gives real Gateway/Route status (Accepted, ResolvedRefs, ReferenceGrant checks). The binary is
built from tools/istiod (see the version note in its go.mod: Istio master, because the Go
module proxy here does not serve Istio 1.30.3) and cached like the control plane's.

Run outside a cluster it needs: the ``istio-system`` namespace, the Gateway API and Istio
CRDs, and these settings. The gateway *deployment* controller is off: it renders the
``kube-gateway`` template from the Helm chart's ``istio-sidecar-injector`` ConfigMap, which
does not exist here, and its Pods could not run on a node-less cluster anyway. So a Gateway's
``Programmed`` condition stays False (no gateway instances); everything else is real.

Command line (used by the Molecule ``controlplane`` scenario)::

    python -m stacktools istiod start  --dir DIR --kubeconfig KUBECONFIG  # idempotent
    python -m stacktools istiod status --dir DIR   # JSON; exit 0 only when ready
    python -m stacktools istiod stop   --dir DIR   # fine when nothing runs
    python -m stacktools istiod build              # build or reuse the binary; print its path

``start`` leaves istiod running in its own session (state in ``DIR/state.json``), so it
outlives the command; ``stop`` finds it again from there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stacktools.builds.gobuild import BuildError
from stacktools.builds.istiod import (
    ISTIO_MODULE_VERSION,
    ISTIO_VERSION_LABEL,
    binary,
    ensure_binary,
)
from stacktools.cli import lifecycle_parser, run, state_handlers
from stacktools.net import free_port
from stacktools.servers.process import ProcessServer, ServerProcess, http_ok, start_process

NAMESPACE = "istio-system"
STATE_FILE = "state.json"


class IstiodError(RuntimeError):
    """istiod did not start; the message says why and where its log is."""


class Istiod(ProcessServer):
    """One istiod process for the cluster behind ``kubeconfig``; state in ``directory``."""

    name = "istiod"

    def __init__(self, directory: Path, kubeconfig: Path, *, detach: bool = False) -> None:
        self.directory = directory.resolve()
        self.kubeconfig = kubeconfig
        self.detach = detach
        self.http_port = 0
        self.process: ServerProcess | None = None

    @property
    def log(self) -> Path:
        return self.directory / "istiod.log"

    @property
    def state_file(self) -> Path:
        return self.directory / STATE_FILE

    @classmethod
    def attach(cls, directory: Path) -> Istiod:
        """The istiod a previous ``start`` (in any process) left running for ``directory``."""
        directory = directory.resolve()
        try:
            state = json.loads((directory / STATE_FILE).read_text())
        except FileNotFoundError:
            return cls(directory, Path(), detach=True)
        istiod = cls(directory, Path(state["kubeconfig"]), detach=True)
        istiod.http_port = int(state["http_port"])
        istiod.process = ServerProcess(
            "istiod", Path(state["executable"]), int(state["pid"]), Path(state["log"])
        )
        return istiod

    def status(self) -> dict[str, Any]:
        running = self.running()
        return {
            "directory": str(self.directory),
            "istio_module_version": ISTIO_MODULE_VERSION,
            "running": running,
            "ready": running and self.ready(),
            "kubeconfig": str(self.kubeconfig) if self.process else None,
            "pid": self.process.pid if self.process else None,
            "log": str(self.log),
        }

    def _write_state(self) -> None:
        assert self.process is not None
        state = {
            "kubeconfig": str(self.kubeconfig),
            "http_port": self.http_port,
            "pid": self.process.pid,
            "executable": str(self.process.executable),
            "log": str(self.log),
        }
        partial = self.state_file.with_suffix(".partial")
        partial.write_text(json.dumps(state, indent=2) + "\n")
        partial.replace(self.state_file)

    def start(self, timeout: float = 120.0) -> None:
        """Start istiod and wait for its /ready endpoint. ``istio-system`` must exist."""
        executable = binary()
        self.directory.mkdir(parents=True, exist_ok=True)
        mesh = self.directory / "mesh.yaml"
        mesh.write_text("{}\n")  # mesh defaults
        self.http_port = free_port()
        addresses = {
            "--httpAddr": self.http_port,
            "--httpsAddr": free_port(),
            "--grpcAddr": free_port(),
            "--secureGRPCAddr": free_port(),
            "--monitoringAddr": free_port(),
        }
        argv = [
            str(executable),
            "discovery",
            f"--kubeconfig={self.kubeconfig}",
            "--domain=cluster.local",
            "--shutdownDuration=1s",
            f"--meshConfig={mesh}",
            f"--networksConfig={self.directory / 'mesh-networks.yaml'}",
            f"--ctrlz_port={free_port()}",
            *(f"{flag}=127.0.0.1:{port}" for flag, port in addresses.items()),
        ]
        env = {
            "KUBECONFIG": str(self.kubeconfig),
            "POD_NAMESPACE": NAMESPACE,
            "POD_NAME": "istiod-local",
            "REVISION": "default",
            # TCPRoute and the other non-GA Gateway API kinds.
            "PILOT_ENABLE_ALPHA_GATEWAY_API": "true",
            "PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER": "false",
        }
        self.process = start_process("istiod", argv, self.log, detach=self.detach, env=env)
        if self.detach:
            self._write_state()
        self.await_ready(timeout, IstiodError, interval=0.5)

    def ready(self) -> bool:
        return http_ok(f"http://127.0.0.1:{self.http_port}/ready")

    def forget(self) -> None:
        self.state_file.unlink(missing_ok=True)


# command line ----------------------------------------------------------------------------
def _cmd_start(args: argparse.Namespace) -> int:
    istiod = Istiod.attach(args.dir)
    kubeconfig = args.kubeconfig.resolve()
    if istiod.running() and istiod.kubeconfig == kubeconfig:
        print(f"already running (see {istiod.state_file})", file=sys.stderr)
        return 0
    istiod.stop()  # a stale state file, or istiod of another cluster
    if not kubeconfig.is_file():
        raise IstiodError(f"kubeconfig {kubeconfig} does not exist; start the cluster first")
    istiod = Istiod(args.dir, kubeconfig, detach=True)
    began = time.monotonic()
    istiod.start(timeout=args.timeout)
    print(f"istiod ready in {time.monotonic() - began:.1f}s; log {istiod.log}", file=sys.stderr)
    print(istiod.state_file)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    commands = lifecycle_parser(
        "python -m stacktools istiod",
        f"istiod ({ISTIO_VERSION_LABEL}, istio.io/istio {ISTIO_MODULE_VERSION}) "
        "against a kubeconfig, outside the cluster.",
        what="istiod",
        start_timeout=120.0,
        dir_help="istiod's state and log folder",
    )
    commands.start.add_argument(
        "--kubeconfig", type=Path, required=True, help="the cluster's kubeconfig"
    )
    handlers = {"start": _cmd_start, **state_handlers(Istiod.attach, ensure_binary)}
    return run(commands, handlers, (IstiodError, BuildError), argv)


if __name__ == "__main__":
    sys.exit(main())
