"""`python -m stacktools controlplane start|status|stop` as the Molecule create/destroy
playbooks call it: the servers outlive the starting process and stop leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kubernetes import client, config

from stacktools.servers.controlplane import ControlPlane
from stacktools.servers.process import pid_running

if TYPE_CHECKING:
    from conftest import Cli

pytestmark = pytest.mark.controlplane


CLI_MODULE = "stacktools.servers.controlplane"  # what the `cli` fixture runs


def test_start_status_stop_from_separate_processes(tmp_path: Path, cli: Cli) -> None:
    cluster = tmp_path / "cluster"
    started = cli("start", "--dir", str(cluster))
    assert started.returncode == 0, started.stderr
    kubeconfig = Path(started.stdout.strip())
    assert kubeconfig == cluster / "kubeconfig"
    state = json.loads((cluster / "state.json").read_text())
    pids = [p["pid"] for p in state["processes"]]
    try:
        assert [p["name"] for p in state["processes"]] == [
            "etcd",
            "kube-apiserver",
            "kube-controller-manager",
        ]
        assert all(pid_running(pid) for pid in pids)

        status = cli("status", "--dir", str(cluster))
        assert status.returncode == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["ready"] is True

        # kubectl (what a person uses) accepts the kubeconfig as written.
        kubectl = subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "get", "namespace", "kube-system"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "KUBECONFIG": ""},
        )
        assert kubectl.returncode == 0, kubectl.stderr
        assert "Active" in kubectl.stdout

        again = cli("start", "--dir", str(cluster))
        assert again.returncode == 0, again.stderr
        assert "already running" in again.stderr
        assert json.loads((cluster / "state.json").read_text())["processes"] == state["processes"]
    finally:
        stopped = cli("stop", "--dir", str(cluster), "--wipe")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(pid_running(pid) for pid in pids)
    assert not (cluster / "state.json").exists()
    assert not (cluster / "etcd").exists()
    assert (cluster / "logs" / "kube-apiserver.log").stat().st_size > 0

    after = cli("status", "--dir", str(cluster))
    assert after.returncode == 1
    assert json.loads(after.stdout)["ready"] is False
    # Stopping a stopped cluster is fine (Molecule destroy may run twice).
    assert cli("stop", "--dir", str(cluster)).returncode == 0


def test_restart_keeps_data_and_certificates(tmp_path: Path) -> None:
    with ControlPlane(tmp_path / "cluster") as plane:
        api = config.new_client_from_config(str(plane.kubeconfig))
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "kept"}})
        api.close()
        ca = plane.pki.ca.cert.read_bytes()
    with ControlPlane(tmp_path / "cluster") as again:
        # Same CA, so kubeconfigs handed out before the restart keep working.
        assert again.pki.ca.cert.read_bytes() == ca
        assert again.get("/api/v1/namespaces/kept") == 200
        assert again.started_in < 30


def test_servers_die_with_the_test_process(tmp_path: Path) -> None:
    """A killed pytest (attached mode) must not leave a 400 MB control plane behind."""
    script = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from stacktools.servers.controlplane import ControlPlane\n"
        "plane = ControlPlane(Path(sys.argv[1]))\n"
        "plane.start()\n"
        "print(json.dumps([p.pid for p in plane.processes]), flush=True)\n"
        "time.sleep(600)\n"
    )
    owner = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "cluster")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout is not None
        pids = json.loads(owner.stdout.readline())
        assert len(pids) == 3
        assert all(pid_running(pid) for pid in pids)
    finally:
        owner.kill()
        owner.wait()
    deadline = time.monotonic() + 30
    while any(pid_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(pid_running(pid) for pid in pids)
