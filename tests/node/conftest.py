"""The stack on a real node: ``site.yml`` converged with inventories/controlplane +
inventories/node on the session's node (stacktools' ``kube_node``), the services' images
imported into its containerd, and MongoDB's one stand-in (FerretDB) behind ``mongodb-svc``.

``stack`` (session) gives the tests the node, the API key, and a ``toolbox`` pod in the
``gateway`` namespace (the one namespace the apiserver's NetworkPolicy admits, where the
Gateway's pods would run) with the apiserver image's Python, to act as a client in the cluster.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymongo
import pytest

from stacktools.builds import ferretdb, node_images, service_images
from stacktools.cluster import addons
from stacktools.servers.node import Node

TOOLBOX_NAMESPACE = "gateway"
TOOLBOX = "toolbox"
INVENTORIES = ("-i", "inventories/controlplane", "-i", "inventories/node")
STANDIN = (
    f"MongoDB STAND-IN: FerretDB {ferretdb.FERRETDB_VERSION} (SQLite) as StatefulSet mongodb "
    "behind Service mongodb-svc, in place of the operator's mongod pods "
    "(no MongoDB server image here)"
)


@dataclass
class Stack:
    node: Node
    api_key: str
    images: dict[str, service_images.ServiceImage]
    ansible: Any  # tests/conftest.py's Ansible

    def kubectl(self, *args: str, timeout: float = 120.0, stdin: str | None = None) -> str:
        return self.node.kubectl(*args, timeout=timeout, stdin=stdin)

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))

    def python(self, script: str, timeout: float = 300.0) -> str:
        """Run a Python script in the toolbox pod (the apiserver image's interpreter)."""
        return self.kubectl(
            "-n",
            TOOLBOX_NAMESPACE,
            "exec",
            "-i",
            TOOLBOX,
            "--",
            "python",
            "-",
            stdin=textwrap.dedent(script),
            timeout=timeout,
        )

    def converge(self, *extra: str, timeout: float = 2400) -> str:
        result: subprocess.CompletedProcess[str] = self.ansible.run(
            "ansible-playbook",
            *INVENTORIES,
            "playbooks/site.yml",
            *extra,
            timeout=timeout,
            STACK_NODE_DIR=str(self.node.directory),
            K8S_AUTH_KUBECONFIG=str(self.node.kubeconfig),
        )
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-80:])
        assert result.returncode == 0, tail
        return result.stdout

    def pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get("-n", namespace, "pods", "-l", selector)["items"]
        return items


def _toolbox(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": TOOLBOX, "namespace": TOOLBOX_NAMESPACE, "labels": {"app": TOOLBOX}},
        "spec": {
            "automountServiceAccountToken": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 10001,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "python",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "-c", "import time; time.sleep(86400)"],
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"cpu": "1", "memory": "256Mi"},
                    },
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def _standin_users(stack: Stack) -> None:
    """What the operator would do for the role's second user: create ``pipeline`` in admin
    with the password of the role's Secret (FerretDB's setup made ``apiserver``)."""

    def password(name: str) -> str:
        secret = stack.get("-n", "mongodb", "secret", name)
        return base64.b64decode(secret["data"]["password"]).decode()

    pod = stack.get("-n", "mongodb", "pod", "mongodb-0")
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://{pod['status']['podIP']}:27017/",
        username="apiserver",
        password=password("mongodb-apiserver-password"),
        authSource="admin",
        directConnection=True,
        serverSelectionTimeoutMS=10000,
    )
    with client:
        users = client.admin.command("usersInfo")["users"]
        if not any(u["user"] == "pipeline" for u in users):
            client.admin.command(
                "createUser", "pipeline", pwd=password("mongodb-pipeline-password"), roles=[]
            )


@pytest.fixture(scope="session")
def stack(kube_node: Node, ansible: Any, request: pytest.FixtureRequest) -> Stack:
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")

    def say(line: str) -> None:
        """A line in the test output itself (not captured): what runs in place of what."""
        if reporter is None or capture is None:
            print(f"node: {line}")
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"node: {line}")

    images = service_images.archives()
    began = time.monotonic()
    kube_node.import_images([image.archive for image in images.values()])
    for image in images.values():
        say(f"imported {image.ref} (built FROM {image.base})")
    say(STANDIN)
    # The stand-in first: its pod waits (CreateContainerConfigError, retried by the kubelet)
    # until the mongodb role has generated the password Secret, so the apiserver role's
    # wait for Available pods (probes on /readyz, which needs MongoDB) can pass in one run.
    kube_node.kubectl(
        "apply",
        "-f",
        "-",
        stdin=kube_node.kubectl("create", "namespace", "mongodb", "--dry-run=client", "-o", "json"),
    )
    kube_node.kubectl(
        "apply",
        "-f",
        "-",
        stdin=addons.manifest(
            "mongodb-standin.yaml",
            {
                "FERRETDB_IMAGE": node_images.images()["ferretdb"].ref,
                "FERRETDB_VERSION": ferretdb.FERRETDB_VERSION,
            },
        ),
    )
    stack = Stack(kube_node, "", images, ansible)
    # The whole site.yml, as inventories/controlplane + node configure it (no Helm releases: the
    # monitoring role applies its CRDs, namespace and monitors, which the gateway role's
    # preflight needs for the grafana route's backend namespace).
    if os.environ.get("STACK_NODE_CONVERGED") == "1" and os.environ.get("STACK_NODE_DIR"):
        # Iterating on a running node (STACK_NODE_DIR) that a previous session of this
        # checkout converged: skip the converge (15 to 18 min on this busy machine).
        say("site.yml NOT converged in this session (STACK_NODE_CONVERGED=1)")
    else:
        stack.converge()
    secret = stack.get("-n", "apiserver", "secret", "apiserver-api-key")
    stack.api_key = base64.b64decode(secret["data"]["api-key"]).decode()
    _standin_users(stack)
    kube_node.kubectl("apply", "-f", "-", stdin=json.dumps(_toolbox(images["apiserver"].ref)))
    kube_node.kubectl(
        "-n",
        TOOLBOX_NAMESPACE,
        "wait",
        f"pod/{TOOLBOX}",
        "--for=condition=Ready",
        "--timeout=600s",  # minutes when another job keeps the cores busy
        timeout=630,
    )
    say(f"stack ready on the node in {time.monotonic() - began:.0f} s")
    return stack


@pytest.fixture(scope="session")
def delta_volume(stack: Stack) -> Path:
    """A hostPath PersistentVolume for the dagster role's Delta table claim, in the node's
    folder on this machine, so the host reads what the pipeline's pods wrote."""
    folder = stack.node.directory / "volumes" / "pipeline-delta"
    folder.mkdir(parents=True, exist_ok=True)
    os.chown(folder, 10001, 10001)  # the pipeline image's user
    claim = stack.get("-n", "dagster", "pvc", "pipeline-delta")
    volume = {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": "pipeline-delta"},
        "spec": {
            "capacity": {"storage": claim["spec"]["resources"]["requests"]["storage"]},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "claimRef": {"namespace": "dagster", "name": "pipeline-delta"},
            "hostPath": {"path": str(folder), "type": "Directory"},
        },
    }
    stack.kubectl("apply", "-f", "-", stdin=json.dumps(volume))
    stack.kubectl(
        "-n",
        "dagster",
        "wait",
        "pvc/pipeline-delta",
        "--for=jsonpath={.status.phase}=Bound",
        "--timeout=60s",
    )
    return folder
