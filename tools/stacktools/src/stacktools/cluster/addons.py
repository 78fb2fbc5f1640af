"""The node's cluster add-ons: CoreDNS (``kube-dns``) and metrics-server, from the manifests
in ``addons/`` with the images the set-up step built."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from importlib import resources

from stacktools.builds.node_images import NodeImage
from stacktools.cluster.nodeconfig import CLUSTER_DNS

Kubectl = Callable[..., str]


def manifest(name: str, values: Mapping[str, str]) -> str:
    """An add-on manifest with its ``${NAME}`` values filled in (Kubernetes' own ``$(VAR)``
    references are left alone); a placeholder without a value is an error."""
    text = resources.files("stacktools.cluster").joinpath("addons", name).read_text()
    for key, value in values.items():
        text = text.replace("${" + key + "}", value)
    left = re.findall(r"\$\{[A-Z_]+\}", text)
    if left:
        msg = f"{name}: no value for {', '.join(sorted(set(left)))}"
        raise KeyError(msg)
    return text


def deploy(kubectl: Kubectl, images: Mapping[str, NodeImage], timeout: float) -> None:
    """Apply CoreDNS and metrics-server; return once both serve (or raise, naming which)."""
    values = {
        "COREDNS_IMAGE": images["coredns"].ref,
        "METRICS_SERVER_IMAGE": images["metrics-server"].ref,
        "CLUSTER_DNS": CLUSTER_DNS,
    }
    for name in ("coredns.yaml", "metrics-server.yaml"):
        kubectl("apply", "--server-side", "-f", "-", stdin=manifest(name, values))
    deadline = time.monotonic() + max(timeout, 60.0)
    for deployment in ("coredns", "metrics-server"):
        remaining = max(int(deadline - time.monotonic()), 10)
        kubectl(
            "-n",
            "kube-system",
            "rollout",
            "status",
            f"deployment/{deployment}",
            f"--timeout={remaining}s",
            timeout=remaining + 30,
        )
    remaining = max(int(deadline - time.monotonic()), 10)
    kubectl(
        "wait",
        "apiservice/v1beta1.metrics.k8s.io",
        "--for=condition=Available",
        f"--timeout={remaining}s",
        timeout=remaining + 30,
    )
