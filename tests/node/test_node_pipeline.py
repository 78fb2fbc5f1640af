"""The pipeline for real: the pipeline image's user-code server as a pod (as the Dagster chart
runs it), and an export as a Kubernetes Job from the same image, with the environment, Secret,
volumes and security settings that the chart's K8sRunLauncher gives run pods. The Job reads
the FerretDB stand-in and writes the Delta table on the dagster role's volume; this machine
reads the table back and compares it with MongoDB."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pymongo
import pytest
from deltalake import DeltaTable

from stacktools.cluster import dagster_chart

from .conftest import Stack

pytestmark = [pytest.mark.node, pytest.mark.timeout(3600)]

NAMESPACE = "dagster"
DAGSTER_HOME = "/opt/dagster/dagster_home"
DELTA_MOUNT = "/data/delta"  # dagster_delta_mount_path


def _pod_spec(stack: Stack, command: list[str]) -> dict[str, Any]:
    """The user-code deployment's pod, as the role's chart values describe it."""
    return {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "runAsGroup": 10001,
            "fsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": "pipeline",
                "image": stack.images["pipeline"].ref,
                "imagePullPolicy": "IfNotPresent",
                "command": command,
                "env": [
                    {"name": "PIPELINE_MONGODB_DATABASE", "value": "uploads"},
                    {"name": "PIPELINE_MONGODB_COLLECTION", "value": "records"},
                    {"name": "PIPELINE_MONGODB_TIMEOUT_MS", "value": "5000"},
                    {"name": "PIPELINE_SCHEDULE_ENABLED", "value": "false"},
                    {"name": "PIPELINE_DELTA_URI", "value": f"{DELTA_MOUNT}/records"},
                ],
                "envFrom": [{"secretRef": {"name": "pipeline-env"}}],
                "ports": [{"name": "grpc", "containerPort": 3030}],
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"cpu": "1", "memory": "1Gi"},
                },
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
                "volumeMounts": [
                    {"name": "tmp", "mountPath": "/tmp"},
                    {"name": "dagster-home", "mountPath": DAGSTER_HOME},
                    {"name": "delta", "mountPath": DELTA_MOUNT},
                ],
            }
        ],
        "volumes": [
            {"name": "tmp", "emptyDir": {}},
            {"name": "dagster-home", "emptyDir": {}},
            {"name": "delta", "persistentVolumeClaim": {"claimName": "pipeline-delta"}},
        ],
    }


def test_user_code_server_runs_as_a_pod(stack: Stack, delta_volume: Path) -> None:
    spec = _pod_spec(
        stack,
        [
            "dagster",
            "api",
            "grpc",
            "-h",
            "0.0.0.0",
            "-p",
            "3030",
            "--module-name",
            "pipeline.definitions",
        ],
    )
    # The gRPC port answers once the code location has loaded (the chart's exec probe,
    # `dagster api grpc-health-check`, starts a Python process per probe: too slow on a
    # machine as busy as this one).
    spec["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": 3030}, "periodSeconds": 5}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "pipeline-code-server", "namespace": NAMESPACE},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "pipeline-code-server"}},
            "template": {"metadata": {"labels": {"app": "pipeline-code-server"}}, "spec": spec},
        },
    }
    stack.kubectl("apply", "-f", "-", stdin=json.dumps(deployment))
    stack.kubectl(
        "-n",
        NAMESPACE,
        "rollout",
        "status",
        "deployment/pipeline-code-server",
        "--timeout=480s",
        timeout=540,
    )
    pod = stack.get("-n", NAMESPACE, "pods", "-l", "app=pipeline-code-server")["items"][0]
    # Ready = its gRPC port answers; the log shows it loaded the code location.
    assert pod["status"]["containerStatuses"][0]["ready"] is True
    logs = stack.kubectl("-n", NAMESPACE, "logs", pod["metadata"]["name"])
    assert "Started Dagster code server" in logs, logs[-2000:]


def test_export_job_writes_the_delta_table_the_host_reads_back(
    stack: Stack, delta_volume: Path
) -> None:
    # Records to export, written through the apiserver from inside the cluster.
    stack.python(
        f"""
        import json, time, urllib.error, urllib.request
        records = [{{"id": f"export-{{i:03d}}", "score": i / 100}} for i in range(100)]
        body = json.dumps({{"records": records}}).encode()
        request = urllib.request.Request("http://apiserver.apiserver:8000/internal-insert/batch",
            data=body, method="POST",
            headers={{"x-api-key": {stack.api_key!r}, "content-type": "application/json"}})
        deadline = time.monotonic() + 300
        while True:  # a client retries for a while, as on a busy machine it must:
            try:
                print(urllib.request.urlopen(request, timeout=60).status)
                break
            except urllib.error.HTTPError as error:  # a 503 (MongoDB busy)
                if error.code != 503 or time.monotonic() > deadline:
                    raise
            except urllib.error.URLError:  # the cluster's DNS not answering in time
                if time.monotonic() > deadline:
                    raise
            time.sleep(2)
        """
    )
    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "export-records", "namespace": NAMESPACE},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 600,
            "template": {
                "metadata": {"labels": {"app": "export-records"}},
                "spec": {
                    **_pod_spec(
                        stack,
                        [
                            "dagster",
                            "job",
                            "execute",
                            "-m",
                            "pipeline.definitions",
                            "-j",
                            "export_records",
                        ],
                    ),
                    "restartPolicy": "Never",
                },
            },
        },
    }
    # The K8sRunLauncher mounts the chart's instance file (telemetry as the role's values set
    # it: off) at DAGSTER_HOME/dagster.yaml; without it Dagster writes a telemetry id under
    # the read-only home folder and the run fails.
    values = {"telemetry": {"enabled": False}}  # roles/dagster/templates/helm/dagster-values
    instance: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": dagster_chart.instance_config_map("dagster"),
            "namespace": NAMESPACE,
        },
        "data": {dagster_chart.INSTANCE_KEY: dagster_chart.instance_yaml(values)},
    }
    stack.kubectl("apply", "-f", "-", stdin=json.dumps(instance))
    pod = job["spec"]["template"]["spec"]
    pod["volumes"].append(
        {"name": "dagster-instance", "configMap": {"name": instance["metadata"]["name"]}}
    )
    pod["containers"][0]["volumeMounts"].append(
        {
            "name": "dagster-instance",
            "mountPath": f"{DAGSTER_HOME}/{dagster_chart.INSTANCE_KEY}",
            "subPath": dagster_chart.INSTANCE_KEY,
        }
    )
    # A Job's pod template cannot change: a run on a reused node (STACK_NODE_DIR) starts anew.
    stack.kubectl("-n", NAMESPACE, "delete", "job", "export-records", "--ignore-not-found")
    stack.kubectl("apply", "-f", "-", stdin=json.dumps(job))
    try:
        stack.kubectl(
            "-n",
            NAMESPACE,
            "wait",
            "job/export-records",
            "--for=condition=Complete",
            "--timeout=420s",
            timeout=480,
        )
    except Exception:
        logs = stack.kubectl("-n", NAMESPACE, "logs", "job/export-records", "--tail=60")
        pytest.fail(f"the export Job did not complete; its log:\n{logs}")
    # The host reads the table the pod wrote on the volume ...
    table = DeltaTable(str(delta_volume / "records")).to_pyarrow_table()
    exported = {row["id"]: row["score"] for row in table.select(["id", "score"]).to_pylist()}
    # ... and compares it with MongoDB (FerretDB), read as the pipeline user.
    secret = stack.get("-n", "mongodb", "secret", "mongodb-pipeline-password")
    pod = stack.get("-n", "mongodb", "pod", "mongodb-0")
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        f"mongodb://{pod['status']['podIP']}:27017/",
        username="pipeline",
        password=base64.b64decode(secret["data"]["password"]).decode(),
        authSource="admin",
        directConnection=True,
        serverSelectionTimeoutMS=10000,
    )
    with client:
        stored = {d["_id"]: d["score"] for d in client.uploads.records.find({}, {"score": 1})}
    assert len(stored) >= 100
    assert exported == stored
    assert {f"export-{i:03d}" for i in range(100)} <= exported.keys()
