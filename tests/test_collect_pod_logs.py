""".ci/collect-pod-logs.sh, the kind workflow's failure step, against a real API server: it picks
exactly the pods a maintainer needs (not Succeeded and not Running-and-ready, or restarted) and
writes their description and logs, plus the cluster-wide listings. The pods' states are set
through the status subresource, as a kubelet sets them (the control plane has no node)."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from stacktools.builds.controlplane import binaries
from stacktools.servers.controlplane import ControlPlane

pytestmark = pytest.mark.controlplane

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / ".ci" / "collect-pod-logs.sh"
NOW = "2026-01-01T00:00:00Z"


def container_status(ready: bool, restarts: int) -> dict[str, Any]:
    state = (
        {"running": {"startedAt": NOW}} if ready else {"waiting": {"reason": "CrashLoopBackOff"}}
    )
    return {
        "name": "main",
        "image": "registry.example/app:1",
        "imageID": "",
        "ready": ready,
        "restartCount": restarts,
        "state": state,
    }


# pod -> (status to set or None for a pod no node ever took, picked by the script)
PODS: dict[str, tuple[dict[str, Any] | None, bool]] = {
    "healthy": ({"phase": "Running", "containerStatuses": [container_status(True, 0)]}, False),
    "finished": ({"phase": "Succeeded", "containerStatuses": []}, False),
    "unscheduled": (None, True),
    "crashlooping": ({"phase": "Running", "containerStatuses": [container_status(False, 4)]}, True),
    "restarted": ({"phase": "Running", "containerStatuses": [container_status(True, 1)]}, True),
}


@pytest.fixture
def pods(kube_controlplane: ControlPlane) -> Iterator[str]:
    """A namespace holding the five pods of PODS in their states; -> the namespace."""
    api = config.new_client_from_config(str(kube_controlplane.kubeconfig))
    core = client.CoreV1Api(api)
    namespace = f"t-logs-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        for name, (status, _) in PODS.items():
            spec = {
                "automountServiceAccountToken": False,
                "containers": [{"name": "main", "image": "registry.example/app:1"}],
            }
            body = {"metadata": {"name": name}, "spec": spec}
            deadline = time.monotonic() + 60
            while True:  # the ServiceAccount admission waits for the namespace's default SA
                try:
                    core.create_namespaced_pod(namespace, body)
                    break
                except ApiException as exc:
                    if exc.status != 403 or time.monotonic() > deadline:
                        raise
                    time.sleep(0.5)
            if status is not None:
                core.patch_namespaced_pod_status(name, namespace, {"status": status})
        yield namespace
    finally:
        core.delete_namespace(namespace)
        api.close()


def test_the_failure_step_collects_exactly_the_failed_pods(
    kube_controlplane: ControlPlane, pods: str, tmp_path: Path
) -> None:
    kubectl = binaries().kubectl
    out = tmp_path / "pod-logs"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("KUBE")},
        "KUBECONFIG": str(kube_controlplane.kubeconfig),
        "PATH": f"{kubectl.parent}:/usr/bin:/bin",
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    picked = {
        path.name.removesuffix(".describe.txt") for path in (out / pods).glob("*.describe.txt")
    }
    assert picked == {name for name, (_, wanted) in PODS.items() if wanted}
    for name in picked:
        description = (out / pods / f"{name}.describe.txt").read_text()
        assert re.search(rf"^Name:\s+{name}$", description, re.MULTILINE), description[:200]
        assert (out / pods / f"{name}.log").is_file()
        assert (out / pods / f"{name}.previous.log").is_file()
    listing = (out / "pods.txt").read_text()
    assert all(name in listing for name in PODS)
    assert (out / "events.txt").is_file()
    # Other namespaces' pods may be picked too (a shared control plane); ours are counted.
    assert "failed or restarted pod(s)" in result.stdout
