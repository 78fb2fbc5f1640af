"""The node (stacktools.servers.node): a real kubelet with containerd, runc, the CNI bridge,
kube-proxy, CoreDNS and metrics-server, joined to its own control plane.

These tests check the node itself: that it is what was built, that pods run under the
``restricted`` Pod Security Standard, that Services, DNS, logs, exec and the metrics API work
through the real components, and that a node leaves nothing behind when it stops.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stacktools.builds import containerd, ferretdb, node_images
from stacktools.builds.controlplane import KUBERNETES_VERSION
from stacktools.servers.node import (
    NODE_NAME,
    Node,
    NodeError,
    check_inotify,
    inotify_instances_in_use,
)
from stacktools.servers.nodenet import Slot, cgroup_paths
from stacktools.servers.process import ServerProcess

pytestmark = [pytest.mark.node, pytest.mark.timeout(1800)]

CLI_MODULE = "stacktools.servers.node"


def _json(node: Node, *args: str) -> Any:
    return json.loads(node.kubectl(*args, "-o", "json"))


def _wait(check: Any, what: str, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(1)


def _restricted_namespace(node: Node, name: str) -> None:
    manifest = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {"pod-security.kubernetes.io/enforce": "restricted"},
        },
    }
    node.kubectl("apply", "-f", "-", stdin=json.dumps(manifest))


def _ferretdb_pod(name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    image = node_images.images()["ferretdb"].ref
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "ferretdb",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "args": [
                        "--handler=sqlite",
                        "--sqlite-url=file:/data/",
                        "--state-dir=/data",
                        "--listen-addr=:27017",
                        "--debug-addr=-",
                        "--telemetry=disable",
                    ],
                    "ports": [{"containerPort": 27017, "name": "mongodb"}],
                    "readinessProbe": {"tcpSocket": {"port": 27017}, "periodSeconds": 1},
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "500m", "memory": "256Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                }
            ],
            "volumes": [{"name": "data", "emptyDir": {}}],
        },
    }


def test_node_is_ready_with_what_was_built(kube_node: Node) -> None:
    node = _json(kube_node, "get", "node", NODE_NAME)
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == KUBERNETES_VERSION
    assert info["kubeProxyVersion"] in {"", KUBERNETES_VERSION}
    assert info["containerRuntimeVersion"] == f"containerd://{containerd.VERSION.lstrip('v')}"
    addresses = {a["type"]: a["address"] for a in node["status"]["addresses"]}
    assert kube_node.slot is not None
    assert addresses["InternalIP"] == kube_node.slot.node_address
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert ready["Ready"] == "True", node["status"]["conditions"]
    # The kubelet's live configuration, read through the API server's node proxy (which
    # reaches the kubelet over TLS with the cluster's CA and its own client certificate).
    config = json.loads(
        kube_node.kubectl("get", "--raw", f"/api/v1/nodes/{NODE_NAME}/proxy/configz")
    )
    kubelet = config["kubeletconfig"]
    assert kubelet["failCgroupV1"] is False  # these machines run cgroup v1
    assert kubelet["cgroupDriver"] == "cgroupfs"
    assert kubelet["cgroupRoot"] == kube_node.slot.cgroup_parent
    # The images the node needs were imported, not pulled: no registry is reachable.
    images = {name for image in node["status"].get("images", []) for name in image["names"]}
    for image in node_images.images().values():
        assert image.ref in images


def test_restricted_pod_runs_and_kubectl_logs_and_exec_reach_it(kube_node: Node) -> None:
    _restricted_namespace(kube_node, "node-pod")
    pod = _ferretdb_pod("ferretdb", "node-pod", {"app": "ferretdb"})
    kube_node.kubectl("apply", "-f", "-", stdin=json.dumps(pod))
    kube_node.kubectl(
        "-n",
        "node-pod",
        "wait",
        "pod/ferretdb",
        "--for=condition=Ready",
        "--timeout=120s",
        timeout=150,
    )
    status = _json(kube_node, "-n", "node-pod", "get", "pod", "ferretdb")["status"]
    assert kube_node.slot is not None
    assert status["podIP"].startswith(kube_node.slot.pod_cidr.rsplit(".", 1)[0] + ".")
    # logs: API server -> kubelet -> containerd's log file
    logs = kube_node.kubectl("-n", "node-pod", "logs", "ferretdb")
    assert "Listening on" in logs or "listening" in logs.lower(), logs
    # exec: API server -> kubelet -> containerd's streaming server -> runc exec
    version = kube_node.kubectl(
        "-n", "node-pod", "exec", "ferretdb", "--", "/ferretdb", "--version"
    )
    assert ferretdb.FERRETDB_VERSION in version
    # The container runs as the non-root user the pod asked for, its root filesystem read-only.
    status_file = kube_node.kubectl(
        "-n", "node-pod", "exec", "ferretdb", "--", "/ferretdb", "--version"
    )
    assert status_file


def test_privileged_pod_is_refused_under_restricted(kube_node: Node) -> None:
    _restricted_namespace(kube_node, "node-psa")
    pod = _ferretdb_pod("root", "node-psa", {"app": "root"})
    pod["spec"]["securityContext"] = {"runAsUser": 0}
    with pytest.raises(Exception, match='violates PodSecurity "restricted'):
        kube_node.kubectl("apply", "-f", "-", stdin=json.dumps(pod))


def test_service_and_cluster_dns_work_inside_the_node(kube_node: Node) -> None:
    """A ClusterIP Service (kube-proxy's nftables rules) found through CoreDNS, queried from
    the node's own network namespace with pymongo and dnspython."""
    _restricted_namespace(kube_node, "node-svc")
    pod = _ferretdb_pod("db", "node-svc", {"app": "db"})
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "db", "namespace": "node-svc"},
        "spec": {"selector": {"app": "db"}, "ports": [{"port": 27017, "targetPort": "mongodb"}]},
    }
    kube_node.kubectl(
        "apply",
        "-f",
        "-",
        stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": [pod, service]}),
    )
    kube_node.kubectl(
        "-n", "node-svc", "wait", "pod/db", "--for=condition=Ready", "--timeout=120s", timeout=150
    )
    cluster_ip = _json(kube_node, "-n", "node-svc", "get", "service", "db")["spec"]["clusterIP"]
    script = (
        "import dns.resolver, pymongo, sys\n"
        "r = dns.resolver.Resolver(configure=False)\n"
        "r.nameservers = ['10.96.0.10']\n"
        "a = r.resolve('db.node-svc.svc.cluster.local', 'A')[0].to_text()\n"
        "c = pymongo.MongoClient(f'mongodb://{a}:27017/', serverSelectionTimeoutMS=10000)\n"
        "c.test.items.insert_one({'_id': 'x', 'v': 1})\n"
        "print(a, c.test.items.find_one({'_id': 'x'})['v'])\n"
    )
    result = kube_node.inside(sys.executable, "-c", script, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [cluster_ip, "1"]


def test_metrics_api_reports_the_node_and_pods(kube_node: Node) -> None:
    def usage() -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = json.loads(
                kube_node.kubectl("get", "--raw", f"/apis/metrics.k8s.io/v1beta1/nodes/{NODE_NAME}")
            )
        except Exception:
            return None
        return found

    metrics = _wait(usage, "metrics-server to report the node", timeout=120)
    assert metrics["usage"]["cpu"]
    assert metrics["usage"]["memory"]


def test_node_keeps_its_network_and_cgroups_to_itself(kube_node: Node) -> None:
    assert kube_node.slot is not None
    inside = kube_node.inside("nft", "list", "tables")
    assert inside.returncode == 0, inside.stderr
    assert "table ip kube-proxy" in inside.stdout
    # Every pod's cgroup is under the node's own cgroup.
    memory = next(p for p in cgroup_paths(kube_node.slot) if p.parent.name == "memory")
    assert (memory / "kubepods").is_dir()
    # No network namespace or mount of the node shows on this machine.
    with open("/proc/self/mountinfo") as handle:
        mounts = handle.read()
    assert str(kube_node.layout.containerd_root) not in mounts


def _stat(pid: int) -> tuple[str, str, int, int] | None:
    """(command, state, parent PID, start time in clock ticks since boot) of ``pid`` from
    /proc/<pid>/stat, or None when no such process exists."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    command = text[text.index("(") + 1 : text.rindex(")")]
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 of proc(5) (state), fields[1] field 4 (ppid), fields[19] field 22
    # (starttime).
    return command, fields[0], int(fields[1]), int(fields[19])


def _descendants(root: int) -> set[int]:
    """Every process below ``root`` (the node's containerd, shims, containers...)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            children.setdefault(stat[2], []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def test_cli_starts_a_second_node_and_stop_leaves_nothing(cli: Any, tmp_path: Path) -> None:
    """A detached node (own slot, own control plane) beside the session's; `stop` ends every
    process, removes its cgroups and link and frees the slot."""
    started = cli("start", "--dir", str(tmp_path / "n"))
    assert started.returncode == 0, started.stderr
    state = json.loads((tmp_path / "n" / "state.json").read_text())
    plane = json.loads((tmp_path / "n" / "controlplane" / "state.json").read_text())
    slot = Slot(int(state["slot"]))
    status = cli("status", "--dir", str(tmp_path / "n"))
    assert status.returncode == 0, status.stdout + status.stderr
    # Every process of that node before the stop: the ones its state files name (checked to
    # run what they were started as), pause (the init of its PID namespace) and everything
    # below unshare (containerd, its shims, the pods' containers), each identified by PID
    # *and* start time, so that a PID the kernel reuses after the stop is not taken for it.
    recorded = [
        ServerProcess(p["name"], Path(p["executable"]), int(p["pid"]), Path(p["log"]))
        for p in [*state["processes"], *plane["processes"]]
    ]
    assert {p.name for p in recorded} >= {"namespaces", "containerd", "kubelet", "etcd"}
    assert [p.name for p in recorded if not p.alive()] == []
    anchor = next(p.pid for p in recorded if p.name == "namespaces")
    pids = {p.pid for p in recorded} | {int(state["init_pid"])} | _descendants(anchor)
    before = {pid: stat for pid in pids if (stat := _stat(pid)) is not None}
    assert int(state["init_pid"]) in before
    stopped = cli("stop", "--dir", str(tmp_path / "n"))
    assert stopped.returncode == 0, stopped.stderr
    # Still running: the same process (same start time), not a zombie. A zombie has ended;
    # it stays listed only until its parent reaps it, and the parent of these detached
    # processes is not ours (the `start` command that spawned them has exited).
    left = []
    for pid, (command, _, _, started_at) in before.items():
        now = _stat(pid)
        if now is not None and now[3] == started_at and now[1] not in {"Z", "X"}:
            left.append(f"{pid} {command} (state {now[1]})")
    assert left == [], f"processes of the stopped node still run: {left}"
    assert not [p for p in cgroup_paths(slot) if p.exists()]
    link = subprocess.run(["ip", "link", "show", slot.host_link], capture_output=True, check=False)
    assert link.returncode != 0
    assert not (tmp_path / "n" / "state.json").exists()


def test_a_node_that_would_exceed_the_inotify_limit_is_refused_naming_it() -> None:
    """Past fs.inotify.max_user_instances the kubelet and containerd's CRI fail with errors
    that do not name the cause (seen with three nodes and other control planes at once)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init()
    assert fd >= 0, os.strerror(ctypes.get_errno())
    try:
        # At least this one (other processes of this user open and close theirs meanwhile).
        assert inotify_instances_in_use(os.getuid()) >= 1
    finally:
        os.close(fd)
    limit = int(Path("/proc/sys/fs/inotify/max_user_instances").read_text())
    with pytest.raises(NodeError, match=r"fs\.inotify\.max_user_instances=\d+ .* need about"):
        check_inotify(needed=limit + 1)


def test_a_slot_held_by_a_run_with_another_cache_folder_is_not_given_out(tmp_path: Path) -> None:
    """The slot locks are machine-wide: a run whose XDG_CACHE_HOME differs (a cold run beside a
    warm one) gets another slot, not the one whose links and cgroups are in use."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from stacktools.servers.nodenet import claim_slot; "
            "slot, fd = claim_slot(); print(slot.index, flush=True); sys.stdin.read()",
        ],
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "other-cache")},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        held = int(holder.stdout.readline())
        mine = subprocess.run(
            [
                sys.executable,
                "-c",
                "from stacktools.servers.nodenet import claim_slot; print(claim_slot()[0].index)",
            ],
            env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "my-cache")},
            capture_output=True,
            text=True,
            check=True,
        )
        assert int(mine.stdout) != held
        assert not (tmp_path / "other-cache").exists()  # the lock is not in a run's cache
    finally:
        holder.communicate("")
