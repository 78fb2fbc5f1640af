"""The apiserver role for real: its pods on a kubelet, under ``restricted``, serving records
that a pod in the cluster writes and reads through the Service, through a rolling update
under load, autoscaling with metrics-server, a drain against the PodDisruptionBudget and a
killed pod."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any

import pytest

from stacktools.builds import containerd
from stacktools.builds.controlplane import binaries

from .conftest import TOOLBOX_NAMESPACE, Stack

pytestmark = [pytest.mark.node, pytest.mark.timeout(3600)]

SERVICE_URL = "http://apiserver.apiserver.svc.cluster.local:8000"
STABLE = "app.kubernetes.io/name=apiserver,track=stable"

# A steady load from the toolbox pod: THREADS clients, each a new connection per request
# (as a gateway opening connections to the Service), upserting records for up to SECONDS or
# until told to stop through a file; prints one JSON summary line, each failure with the body
# of its answer (the apiserver's error code tells a database error from a refused connection).
LOAD = """
import json, sys, threading, time, urllib.error, urllib.request, os
url, key, stop = sys.argv[1], sys.argv[2], sys.argv[5]
seconds, threads = float(sys.argv[3]), int(sys.argv[4])
ok = [0] * threads
failed = [[] for _ in range(threads)]
def run(n):
    i = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and not os.path.exists(stop):
        i += 1
        body = json.dumps({"id": f"load-{n}-{i}", "score": 0.5}).encode()
        request = urllib.request.Request(url + "/internal-insert", data=body, method="POST",
            headers={"x-api-key": key, "content-type": "application/json", "connection": "close"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                response.read()
                ok[n] += 1
        except urllib.error.HTTPError as error:
            # The body says who answered: the apiserver's JSON error code, or another server.
            body = error.read()[:200].decode(errors="replace")
            failed[n].append(f"{time.strftime('%H:%M:%S')} HTTP {error.code}: {body}")
        except Exception as error:
            failed[n].append(f"{time.strftime('%H:%M:%S')} {type(error).__name__}: {error}")
        time.sleep(0.02)
workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
for w in workers: w.start()
for w in workers: w.join()
errors = [e for f in failed for e in f]
print(json.dumps({"ok": sum(ok), "failed": len(errors), "errors": errors[:20]}))
"""


def _start_load(
    stack: Stack, seconds: float, threads: int = 4
) -> tuple[subprocess.Popen[str], str]:
    stop = f"/tmp/stop-{time.monotonic_ns()}"
    node = stack.node
    process = subprocess.Popen(
        [
            str(binaries().kubectl),
            f"--kubeconfig={node.kubeconfig}",
            "-n",
            TOOLBOX_NAMESPACE,
            "exec",
            "-i",
            "toolbox",
            "--",
            "python",
            "-",
            SERVICE_URL,
            stack.api_key,
            str(seconds),
            str(threads),
            stop,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(LOAD)
    process.stdin.close()
    process.stdin = None  # the script is sent; communicate() must not flush it again
    return process, stop


def _finish_load(stack: Stack, process: subprocess.Popen[str], stop: str) -> dict[str, Any]:
    stack.kubectl(
        "-n",
        TOOLBOX_NAMESPACE,
        "exec",
        "toolbox",
        "--",
        "python",
        "-c",
        f"open({stop!r}, 'w').close()",
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    summary: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return summary


def _wait(check: Any, what: str, timeout: float, explain: Any = None) -> Any:
    """Poll ``check`` until it returns something true; fail after ``timeout`` seconds naming
    ``what`` (and what ``explain()`` then says)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = f": {explain()}" if explain else ""
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(2)


def _ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return pod["metadata"].get("deletionTimestamp") is None and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def test_pods_are_ready_under_restricted_with_the_roles_hardening(stack: Stack) -> None:
    namespace = stack.get("namespace", "apiserver")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = stack.pods("apiserver", "app.kubernetes.io/name=apiserver")
    tracks = {p["metadata"]["labels"]["track"] for p in pods if _ready(p)}
    assert tracks == {"stable", "canary"}, [p["status"].get("conditions") for p in pods]
    for pod in pods:
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        container = spec["containers"][0]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["limits"]["cpu"]
        assert container["image"] == stack.images["apiserver"].ref
    # What the kernel enforces, seen from inside a running pod.
    pod = next(p for p in pods if _ready(p))["metadata"]["name"]
    probe = stack.kubectl(
        "-n",
        "apiserver",
        "exec",
        pod,
        "--",
        "python",
        "-c",
        "import os\n"
        "try:\n    open('/probe', 'w')\nexcept OSError as e:\n    ro = e.errno\n"
        "caps = open('/proc/self/status').read().split('CapEff:')[1].split()[0]\n"
        "print(os.getuid(), os.getgid(), ro, caps)",
    ).split()
    assert probe[:2] == ["10001", "10001"]
    assert probe[2] == "30"  # EROFS: the root filesystem is read-only
    assert int(probe[3], 16) == 0  # no capabilities at all
    assert stack.get("-n", "apiserver", "networkpolicy", "apiserver-ingress")["spec"]["podSelector"]
    # The runtime the pods run on.
    node = stack.get("node", "stack-node")
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].endswith(
        containerd.VERSION.lstrip("v")
    )


def test_upsert_and_read_through_the_service_from_a_pod(stack: Stack) -> None:
    out = stack.python(
        f"""
        import json, urllib.request
        base, key = {SERVICE_URL!r}, {stack.api_key!r}
        def call(method, path, body=None):
            request = urllib.request.Request(base + path, method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={{"x-api-key": key, "content-type": "application/json"}})
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read())
        first = call("POST", "/internal-insert", {{"id": "node-1", "score": 0.25}})
        second = call("POST", "/internal-insert", {{"id": "node-1", "score": 0.75}})
        read = call("GET", "/internal-read?id=node-1")
        try:
            call("POST", "/internal-insert", {{"id": "node-2", "score": 7}})
        except urllib.error.HTTPError as error:
            bad = (error.code, json.loads(error.read()))
        print(json.dumps({{"first": first, "second": second, "read": read, "bad": bad}}))
        """
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["first"][0] == 200
    assert result["second"][1]["score"] == 0.75
    assert result["second"][1]["created_at"] == result["first"][1]["created_at"]
    assert [(r["id"], r["score"]) for r in result["read"][1]] == [("node-1", 0.75)]
    assert result["bad"][0] == 422


def test_rolling_update_to_a_new_tag_under_load_fails_no_request(stack: Stack) -> None:
    old = stack.images["apiserver"]
    new_tag = f"{old.tag}-rollout"
    ctr = containerd.binaries()["ctr"]
    subprocess.run(
        [
            str(ctr),
            f"--address={stack.node.layout.containerd_socket}",
            "--namespace=k8s.io",
            "images",
            "tag",
            "--force",
            f"docker.io/{old.ref}",
            f"docker.io/{old.ref.split(':')[0]}:{new_tag}",
        ],
        check=True,
        capture_output=True,
    )
    process, stop = _start_load(stack, seconds=600)
    try:
        time.sleep(5)
        began = time.monotonic()
        stack.converge("--tags", "apiserver", "-e", f"apiserver_image_tag={new_tag}")
        for deployment in ("apiserver", "apiserver-canary"):
            stack.kubectl(
                "-n",
                "apiserver",
                "rollout",
                "status",
                f"deployment/{deployment}",
                "--timeout=300s",
                timeout=330,
            )
        rollout = time.monotonic() - began
        time.sleep(5)
    finally:
        summary = _finish_load(stack, process, stop)
    pods = [p for p in stack.pods("apiserver", STABLE) if _ready(p)]
    assert {p["spec"]["containers"][0]["image"].rsplit(":", 1)[1] for p in pods} == {new_tag}
    print(
        f"rolling update in {rollout:.0f} s under load: {summary['ok']} requests, "
        f"{summary['failed']} failed"
    )
    assert summary["ok"] > 100
    assert summary["failed"] == 0, summary["errors"]


def _hpa(stack: Stack) -> dict[str, Any]:
    hpa: dict[str, Any] = stack.get("-n", "apiserver", "hpa", "apiserver")
    return hpa


def test_hpa_grows_under_wrk_load_and_shrinks_after(stack: Stack) -> None:
    """wrk (Debian's) in the node's network namespace loads the Service; metrics-server reports
    the pods' CPU; the role's HorizontalPodAutoscaler scales within the inventory's range.

    The load is on /healthz, which costs the apiserver's CPU and not MongoDB's: with reads,
    the FerretDB stand-in saturates first, /readyz (which pings MongoDB) fails on every pod at
    once, and the HPA ignores unready pods (seen on this machine; see the report)."""
    hpa = _hpa(stack)
    low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
    assert (low, high) == (1, 3)  # inventories/controlplane (as local)
    _wait(lambda: _hpa(stack)["status"].get("currentMetrics"), "the HPA to read pod CPU", 180)
    service = stack.get("-n", "apiserver", "service", "apiserver")["spec"]["clusterIP"]
    wrk = stack.node.spawn_inside(
        "wrk",
        "-t2",
        "-c8",
        "-d240s",
        "--timeout",
        "10s",
        "-H",
        f"x-api-key: {stack.api_key}",
        f"http://{service}:8000/healthz",
    )
    try:
        grown = _wait(
            lambda: (r := _hpa(stack)["status"].get("desiredReplicas", 0)) > low and r,
            "the HPA to scale up under load",
            240,
        )
        _wait(
            lambda: len([p for p in stack.pods("apiserver", STABLE) if _ready(p)]) == grown,
            f"{grown} stable pods Ready",
            150,
        )
    finally:
        out, _ = wrk.communicate(timeout=300)
    print(f"wrk: {out.splitlines()[-2:] if out else ''}")
    assert low < grown <= high
    # The controller scales down 30 s (stacktools.servers.controlplane) after metrics-server
    # reports the pods idle; on a machine busy with other work its scrapes can fail for minutes,
    # and without metrics the HPA holds its size.
    _wait(
        lambda: (
            _hpa(stack)["status"].get("desiredReplicas") == low
            and len(stack.pods("apiserver", STABLE)) == low
        ),
        "the HPA to scale back down after the load",
        900,
        explain=lambda: json.dumps(_hpa(stack)["status"], indent=1),
    )


def test_drain_respects_the_pod_disruption_budget(stack: Stack) -> None:
    """One node: draining it may evict the canary (no budget) but never the last stable pod
    (minAvailable 1), however long the drain tries."""
    pdb = stack.get("-n", "apiserver", "pdb", "apiserver")
    assert pdb["spec"]["minAvailable"] == 1

    # Exactly one: the HPA at its minimum (after the load test it may still be shrinking).
    def one_ready_stable_pod() -> set[str] | None:
        ready = {p["metadata"]["name"] for p in stack.pods("apiserver", STABLE) if _ready(p)}
        return ready if len(ready) == 1 else None

    stable_before = _wait(one_ready_stable_pod, "exactly one Ready stable pod", 900)
    try:
        with pytest.raises(Exception, match="disruption budget"):
            stack.kubectl(
                "drain",
                "stack-node",
                "--pod-selector=app.kubernetes.io/name=apiserver",
                "--delete-emptydir-data",  # the pods' /tmp
                "--timeout=40s",
                timeout=90,
            )
        stable_after = {p["metadata"]["name"] for p in stack.pods("apiserver", STABLE) if _ready(p)}
        assert stable_after == stable_before
        canary = stack.pods("apiserver", "app.kubernetes.io/name=apiserver,track=canary")
        assert not [p for p in canary if _ready(p)]  # evicted; its replacement cannot schedule
    finally:
        stack.kubectl("uncordon", "stack-node")
    _wait(
        lambda: [p for p in stack.pods("apiserver", "track=canary") if _ready(p)],
        "the canary to come back after uncordon",
        180,
    )


def _container_id(pod: dict[str, Any]) -> str:
    return str(pod["status"]["containerStatuses"][0]["containerID"]).split("://", 1)[1]


def test_a_killed_pod_is_replaced_and_traffic_recovers(stack: Stack) -> None:
    ctr = containerd.binaries()["ctr"]
    base = [str(ctr), f"--address={stack.node.layout.containerd_socket}", "--namespace=k8s.io"]
    process, stop = _start_load(stack, seconds=400, threads=2)
    try:
        time.sleep(3)
        # 1. The container's process dies (SIGKILL, as an OOM kill or a crash would): the
        #    kubelet restarts it in place.
        pod = _wait(
            lambda: next((p for p in stack.pods("apiserver", STABLE) if _ready(p)), None),
            "a Ready stable pod",
            180,
        )
        restarts = pod["status"]["containerStatuses"][0]["restartCount"]
        subprocess.run(
            [*base, "tasks", "kill", "--signal", "SIGKILL", _container_id(pod)],
            check=True,
            capture_output=True,
        )
        name = pod["metadata"]["name"]
        _wait(
            lambda: (
                (p := stack.get("-n", "apiserver", "pod", name))["status"]["containerStatuses"][0][
                    "restartCount"
                ]
                > restarts
                and _ready(p)
            ),
            "the kubelet to restart the killed container",
            120,
        )
        # 2. The pod itself goes (deleted at once, as when its node dies): the ReplicaSet
        #    makes a new one.
        stack.kubectl("-n", "apiserver", "delete", "pod", name, "--grace-period=0", "--force")
        _wait(
            lambda: [
                p
                for p in stack.pods("apiserver", STABLE)
                if _ready(p) and p["metadata"]["name"] != name
            ],
            "a replacement pod Ready",
            180,
        )
        recovered = time.monotonic()
        time.sleep(10)
    finally:
        summary = _finish_load(stack, process, stop)
    print(f"killed pod: {summary['ok']} requests ok, {summary['failed']} failed while it was down")
    assert summary["ok"] > 0
    # After recovery, requests succeed again without anybody acting.
    after = stack.python(
        f"""
        import urllib.request
        request = urllib.request.Request({SERVICE_URL!r} + "/internal-read?limit=1",
                                         headers={{"x-api-key": {stack.api_key!r}}})
        print(urllib.request.urlopen(request, timeout=10).status)
        """
    )
    assert after.strip() == "200"
    assert recovered
