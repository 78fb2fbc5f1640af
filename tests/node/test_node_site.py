"""``site.yml`` on the node as a whole: every pod it (and the tests) put on the node runs from
an image that was imported into the node's containerd, and none waits for a pull. Nothing can
be pulled on this machine, so a pod whose image was not built here (a Helm release's istiod,
operator, Grafana or Dagster webserver, say) would sit in ImagePullBackOff and hold the
node's requests; inventories/node keeps such releases off."""

from __future__ import annotations

from typing import Any

import pytest

from stacktools.servers.node import NODE_NAME

from .conftest import Stack

pytestmark = [pytest.mark.node, pytest.mark.timeout(3600)]

PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"}


def _normalized(ref: str) -> str:
    """An image reference as containerd names it (docker.io/ and library/ made explicit)."""
    first, _, rest = ref.partition("/")
    if not rest:
        return f"docker.io/library/{ref}"
    if "." in first or ":" in first or first == "localhost":
        return ref
    return f"docker.io/{ref}"


def test_every_pod_on_the_node_runs_an_imported_image(stack: Stack) -> None:
    node = stack.get("node", NODE_NAME)
    imported = {name for image in node["status"].get("images", []) for name in image["names"]}
    assert _normalized(stack.images["apiserver"].ref) in imported
    pods: list[dict[str, Any]] = stack.get("pods", "--all-namespaces")["items"]
    on_node = [p for p in pods if p["spec"].get("nodeName") == NODE_NAME]
    # The stack's own pods are there: the apiserver's, the stand-in, the toolbox (the add-ons'
    # in kube-system; the pipeline's when its tests ran first).
    namespaces = {p["metadata"]["namespace"] for p in on_node}
    assert {"apiserver", "mongodb", "gateway", "kube-system"} <= namespaces, namespaces
    not_imported = []
    waiting = []
    for pod in on_node:
        name = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        spec = pod["spec"]
        for container in [*spec.get("initContainers", []), *spec["containers"]]:
            if _normalized(container["image"]) not in imported:
                not_imported.append(f"{name}: {container['image']}")
        statuses = pod["status"].get("initContainerStatuses", []) + pod["status"].get(
            "containerStatuses", []
        )
        for status in statuses:
            reason = status.get("state", {}).get("waiting", {}).get("reason")
            if reason in PULL_REASONS:
                waiting.append(f"{name} ({status['name']}): {reason}")
    assert not_imported == [], f"pods on the node with images it was not given: {not_imported}"
    assert waiting == [], f"pods on the node waiting for an image pull: {waiting}"
