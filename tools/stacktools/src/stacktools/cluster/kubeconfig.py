"""Kubeconfig files for the local control plane's users (admin, controllers, nodes)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from stacktools.cluster.pki import CertPaths

CLUSTER_NAME = "controlplane"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    client: CertPaths,
    user: str,
    *,
    cluster: str = CLUSTER_NAME,
) -> None:
    """A self-contained kubeconfig (certificates embedded); JSON is valid kubeconfig YAML."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": cluster,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": user}}],
        "current-context": cluster,
    }
    path.write_text(json.dumps(config, indent=2) + "\n")
    path.chmod(0o600)
