"""``docker run`` settings derived from a Kubernetes pod spec: one container run the way the
kubelet would run it (user and groups, read-only root filesystem, capabilities,
no-new-privileges, seccomp, resources, env from values and Secrets, emptyDir and claimed
volumes, ports, command/args, probes, termination grace period).

What a pod spec holds that this module cannot do (a Secret not supplied, a volume type it does
not know, a privileged container) raises :class:`PodSpecError` naming it, instead of being
left out: a test must never run a container more permissive than the manifest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The kubelet creates an emptyDir world-writable (pkg/volume/emptydir: perm 0777) and, with
# an fsGroup, gives its group to the fsGroup with the setgid bit (SetVolumeOwnership).
EMPTYDIR_MODE = 0o777
SETGID = 0o2000
# A provisioned volume is not world-writable; with an fsGroup the group may write.
CLAIM_MODE = 0o775
QUANTITY = re.compile(r"^([0-9.]+)([A-Za-z]*)$")
BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
DECIMAL = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


class PodSpecError(ValueError):
    """The pod spec asks for something that cannot be reproduced faithfully."""


@dataclass(frozen=True)
class Probe:
    """A probe: ``http`` (path and container port) or ``exec`` (command), with its timing."""

    kind: str
    path: str | None
    port: int | None
    command: tuple[str, ...]
    period: float
    timeout: float
    failure_threshold: int


@dataclass(frozen=True)
class RunSettings:
    """``docker run [options] image [args]`` of one container of a pod."""

    options: tuple[str, ...]
    entrypoint: tuple[str, ...] | None  # Kubernetes `command` (replaces ENTRYPOINT)
    args: tuple[str, ...]  # Kubernetes `args` (replace CMD)
    user: tuple[int, int]
    ports: dict[str, int]  # port name (or number) -> container port
    probes: dict[str, Probe]  # startup / liveness / readiness
    grace_seconds: int
    env: dict[str, str] = field(repr=False)


def quantity_bytes(value: str) -> int:
    match = QUANTITY.match(str(value))
    if match is None or match.group(2) not in BINARY | DECIMAL:
        msg = f"not a Kubernetes quantity: {value!r}"
        raise PodSpecError(msg)
    number, suffix = float(match.group(1)), match.group(2)
    return int(number * (BINARY | DECIMAL)[suffix])


def cpu_cores(value: str) -> float:
    text = str(value)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _security(pod: Mapping[str, Any], container: Mapping[str, Any]) -> dict[str, Any]:
    """The container's effective security context (its own fields win over the pod's)."""
    effective = {**(pod.get("securityContext") or {})}
    effective.update(container.get("securityContext") or {})
    return effective


def _security_options(pod: Mapping[str, Any], security: Mapping[str, Any]) -> list[str]:
    if security.get("privileged"):
        msg = "privileged containers are not run by the tests"
        raise PodSpecError(msg)
    uid, gid = security.get("runAsUser"), security.get("runAsGroup")
    if uid is None:
        msg = "runAsUser is not set: the image's user would decide"
        raise PodSpecError(msg)
    if security.get("runAsNonRoot") and int(uid) == 0:
        msg = "runAsNonRoot with runAsUser 0: the kubelet refuses to start it"
        raise PodSpecError(msg)
    # The kubelet runs the pod's probes, never an image's HEALTHCHECK.
    options = ["--no-healthcheck", "--user", f"{uid}:{gid if gid is not None else uid}"]
    fs_group = (pod.get("securityContext") or {}).get("fsGroup")
    if fs_group is not None:
        options += ["--group-add", str(fs_group)]
    if security.get("readOnlyRootFilesystem"):
        options.append("--read-only")
    if security.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    capabilities = security.get("capabilities") or {}
    options += [arg for cap in capabilities.get("drop", []) for arg in ("--cap-drop", cap)]
    options += [arg for cap in capabilities.get("add", []) for arg in ("--cap-add", cap)]
    seccomp = (security.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    if seccomp == "Unconfined":
        options += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":  # Docker's default profile is the runtime default
        msg = f"seccompProfile {seccomp} is not reproduced"
        raise PodSpecError(msg)
    return options


def _env(container: Mapping[str, Any], secrets: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        ref = source.get("secretRef")
        if ref is None:
            msg = f"envFrom {source} is not a secretRef"
            raise PodSpecError(msg)
        if ref["name"] not in secrets and not ref.get("optional"):
            msg = f"envFrom Secret {ref['name']} has no test values"
            raise PodSpecError(msg)
        env.update(secrets.get(ref["name"], {}))
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            msg = f"env {item['name']}: only values and secretKeyRef are reproduced"
            raise PodSpecError(msg)
        try:
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
        except KeyError:
            msg = f"env {item['name']}: Secret {ref['name']} key {ref['key']} has no test value"
            raise PodSpecError(msg) from None
    return env


def _host_folder(folder: Path, mode: int, fs_group: int | None) -> Path:
    """A host folder standing for a volume, owned and moded as the kubelet leaves it."""
    folder.mkdir(parents=True, exist_ok=True)
    if fs_group is not None:
        os.chown(folder, -1, fs_group)
        mode |= SETGID
    folder.chmod(mode)
    return folder


def _config_map(volume: Mapping[str, Any], data: Mapping[str, str], folder: Path) -> Path:
    """The files of a configMap volume (read-only, mode 0644 as the kubelet's default)."""
    folder.mkdir(parents=True, exist_ok=True)
    for key, content in data.items():
        (folder / key).write_text(content)
        (folder / key).chmod(int(volume["configMap"].get("defaultMode", 0o644)))
    return folder


def _volumes(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    claims: Mapping[str, Path],
    config_maps: Mapping[str, Mapping[str, str]],
    scratch: Path,
) -> list[str]:
    volumes = {volume["name"]: volume for volume in pod.get("volumes") or []}
    fs_group = (pod.get("securityContext") or {}).get("fsGroup")
    group = None if fs_group is None else int(fs_group)
    options: list[str] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            msg = f"volumeMount {mount['name']} names no volume of the pod"
            raise PodSpecError(msg)
        readonly = ",readonly" if mount.get("readOnly") else ""
        target = mount["mountPath"]
        if "emptyDir" in volume and (volume["emptyDir"] or {}).get("medium") == "Memory":
            size = (volume["emptyDir"] or {}).get("sizeLimit")
            limit = f",tmpfs-size={quantity_bytes(size)}" if size else ""
            options += ["--mount", f"type=tmpfs,destination={target}{limit}{readonly}"]
            continue
        if "emptyDir" in volume:  # on the node's disk: a bind mount of a fresh folder
            source = _host_folder(scratch / "emptydir" / mount["name"], EMPTYDIR_MODE, group)
        elif "configMap" in volume:
            name = volume["configMap"]["name"]
            if name not in config_maps:
                msg = f"volume {mount['name']}: ConfigMap {name} has no test content"
                raise PodSpecError(msg)
            source = _config_map(volume, config_maps[name], scratch / "configmap" / name)
            source = source / mount["subPath"] if mount.get("subPath") else source
            readonly = ",readonly"
        elif "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            if claim not in claims:
                msg = f"volume {mount['name']}: claim {claim} has no test folder"
                raise PodSpecError(msg)
            source = _host_folder(claims[claim], CLAIM_MODE, group)
        else:
            msg = f"volume {mount['name']}: {sorted(volume)} is not reproduced"
            raise PodSpecError(msg)
        options += ["--mount", f"type=bind,source={source},destination={target}{readonly}"]
    return options


def _resources(container: Mapping[str, Any]) -> list[str]:
    limits = (container.get("resources") or {}).get("limits") or {}
    requests = (container.get("resources") or {}).get("requests") or {}
    options = []
    if "cpu" in limits:
        options += ["--cpus", f"{cpu_cores(limits['cpu']):g}"]
    if "memory" in limits:
        memory = quantity_bytes(limits["memory"])
        options += ["--memory", str(memory), "--memory-swap", str(memory)]
    if "cpu" in requests:  # the kubelet's cpu.shares for the request
        options += ["--cpu-shares", str(max(2, int(cpu_cores(requests["cpu"]) * 1024)))]
    return options


def _probe(spec: Mapping[str, Any], ports: Mapping[str, int]) -> Probe:
    period = float(spec.get("periodSeconds", 10))
    timeout = float(spec.get("timeoutSeconds", 1))
    failures = int(spec.get("failureThreshold", 3))
    if "httpGet" in spec:
        port = spec["httpGet"]["port"]
        number = ports[port] if isinstance(port, str) else int(port)
        path = spec["httpGet"].get("path", "/")
        return Probe("http", path, number, (), period, timeout, failures)
    if "exec" in spec:
        command = tuple(spec["exec"]["command"])
        return Probe("exec", None, None, command, period, timeout, failures)
    msg = f"probe {sorted(spec)} is not reproduced"
    raise PodSpecError(msg)


def container_of(pod: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    for container in pod.get("containers") or []:
        if container["name"] == name:
            return dict(container)
    msg = f"the pod has no container {name}"
    raise PodSpecError(msg)


def run_settings(
    pod: Mapping[str, Any],
    container_name: str,
    *,
    secrets: Mapping[str, Mapping[str, str]],
    scratch: Path,
    claims: Mapping[str, Path] | None = None,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
) -> RunSettings:
    """The ``docker run`` settings of ``container_name`` in the pod spec ``pod``.

    ``secrets`` maps Secret name -> key -> test value. Volumes become host folders, created
    with the kubelet's modes and fsGroup ownership: an emptyDir under ``scratch``, a
    PersistentVolumeClaim at ``claims[claim name]``, a ConfigMap's keys (``config_maps[name]``)
    as read-only files under ``scratch`` (one file with ``subPath``)."""
    container = container_of(pod, container_name)
    security = _security(pod, container)
    ports = {
        str(port.get("name") or port["containerPort"]): int(port["containerPort"])
        for port in container.get("ports") or []
    }
    probes = {
        kind: _probe(container[f"{kind}Probe"], ports)
        for kind in ("startup", "liveness", "readiness")
        if container.get(f"{kind}Probe")
    }
    env = _env(container, secrets)
    options = _security_options(pod, security)
    options += _volumes(pod, container, claims or {}, config_maps or {}, scratch)
    options += _resources(container)
    if container.get("workingDir"):
        options += ["--workdir", str(container["workingDir"])]
    uid = int(security["runAsUser"])
    gid = int(security.get("runAsGroup", uid))
    command = container.get("command")
    return RunSettings(
        options=tuple(options),
        entrypoint=tuple(command) if command else None,
        args=tuple(container.get("args") or ()),
        user=(uid, gid),
        ports=ports,
        probes=probes,
        grace_seconds=int(pod.get("terminationGracePeriodSeconds", 30)),
        env=env,
    )
