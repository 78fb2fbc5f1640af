"""The pod spec that the dagster chart's user-code Deployment gets from the values the dagster
role renders (``dagster-user-deployments.deployments[]``), for running the pipeline image the
way the cluster runs it.

The mapping is the chart's template ``charts/dagster-user-deployments/templates/
deployment-user.yaml`` (chart 1.13.27; it declares no container port): the container runs
``dagster api grpc -h 0.0.0.0 -p <port> <dagsterApiGrpcArgs>`` as args, gets DAGSTER_HOME
(``global.dagsterHome``) from the chart's shared ConfigMap, DAGSTER_PG_PASSWORD from the
PostgreSQL Secret, the deployment's env, envSecrets, security contexts, volumes and resources,
and an exec readiness probe ``dagster api grpc-health-check -p <port>`` (period 20 s, timeout
10 s, 15 failures). Only the values come from the role; this module holds no value of its own
beyond the chart's defaults.
The variables that only the K8sRunLauncher reads (the container context, the run namespace)
are left out: no Kubernetes API is there to launch runs on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

CHART_NAME = "dagster-user-deployments"
# The instance ConfigMap (``<release>-instance``, key dagster.yaml) that the K8sRunLauncher
# mounts into every run pod at DAGSTER_HOME/dagster.yaml (dagster_k8s job construction).
INSTANCE_KEY = "dagster.yaml"  # the container's name in the chart's template
DAGSTER_HOME = "/opt/dagster/dagster_home"  # the chart's global.dagsterHome default
READINESS = {"periodSeconds": 20, "timeoutSeconds": 10, "failureThreshold": 15}


def user_deployment(values: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The values of the user-code deployment ``name``."""
    deployments = values["dagster-user-deployments"]["deployments"]
    for deployment in deployments:
        if deployment["name"] == name:
            return dict(deployment)
    msg = f"no user-code deployment {name!r} in {[d['name'] for d in deployments]}"
    raise KeyError(msg)


def grpc_args(deployment: Mapping[str, Any]) -> list[str]:
    port = str(deployment["port"])
    every_interface = "0.0.0.0"  # noqa: S104 - the chart's argument: the pod's own address
    return [
        "dagster",
        "api",
        "grpc",
        "-h",
        every_interface,
        "-p",
        port,
        *deployment["dagsterApiGrpcArgs"],
    ]


def user_code_pod(values: Mapping[str, Any], name: str, image: str) -> dict[str, Any]:
    """The pod spec of the user-code deployment ``name`` running ``image``."""
    deployment = user_deployment(values, name)
    port = str(deployment["port"])
    global_values = values.get("global") or {}
    env = [
        {"name": "DAGSTER_CURRENT_IMAGE", "value": image},
        {"name": "DAGSTER_HOME", "value": global_values.get("dagsterHome", DAGSTER_HOME)},
        {
            "name": "DAGSTER_PG_PASSWORD",
            "valueFrom": {
                "secretKeyRef": {
                    "name": global_values["postgresqlSecretName"],
                    "key": "postgresql-password",
                }
            },
        },
        *(deployment.get("env") or []),
    ]
    container = {
        "name": CHART_NAME,
        "image": image,
        "args": grpc_args(deployment),
        "env": env,
        "envFrom": [{"secretRef": secret} for secret in deployment.get("envSecrets") or []],
        "securityContext": deployment.get("securityContext") or {},
        "resources": deployment.get("resources") or {},
        "readinessProbe": {
            "exec": {"command": ["dagster", "api", "grpc-health-check", "-p", port]},
            **READINESS,
        },
        "volumeMounts": deployment.get("volumeMounts") or [],
    }
    return {
        "securityContext": deployment.get("podSecurityContext") or {},
        "containers": [container],
        "volumes": deployment.get("volumes") or [],
    }


def instance_config_map(release: str) -> str:
    return f"{release}-instance"


def instance_yaml(values: Mapping[str, Any]) -> str:
    """The part of the chart's instance ConfigMap (templates/configmap-instance.yaml) that a run
    in the image reads without a cluster: telemetry as the values set it. Run and event storage
    stay Dagster's local default in DAGSTER_HOME; in the cluster they are the chart's PostgreSQL.
    """
    enabled = bool((values.get("telemetry") or {}).get("enabled", True))
    return f"telemetry:\n  enabled: {str(enabled).lower()}\n"


def run_pod(
    values: Mapping[str, Any], name: str, image: str, args: list[str], release: str = "dagster"
) -> dict[str, Any]:
    """A run pod as the K8sRunLauncher builds it for the code location ``name``: the user-code
    deployment's container settings (the chart passes them on with includeConfigInLaunchedRuns),
    the instance file mounted at DAGSTER_HOME/dagster.yaml, no probes, its own ``args``."""
    pod = user_code_pod(values, name, image)
    (container,) = pod["containers"]
    home = next(e["value"] for e in container["env"] if e["name"] == "DAGSTER_HOME")
    container.pop("readinessProbe")
    container["args"] = args
    container["volumeMounts"] = [
        *container["volumeMounts"],
        {
            "name": "dagster-instance",
            "mountPath": f"{home}/{INSTANCE_KEY}",
            "subPath": INSTANCE_KEY,
        },
    ]
    pod["volumes"] = [
        *pod["volumes"],
        {"name": "dagster-instance", "configMap": {"name": instance_config_map(release)}},
    ]
    pod["restartPolicy"] = "Never"
    return pod
