"""A small typed client of the Kubernetes REST API (standard library only).

Enough for the harness and the traffic checks: GET, DELETE, server-side apply, sub-resources
(``/token``, ``/log``). Built from the local control plane's admin certificate or from a
kubeconfig (client certificate or token), so the same checks run against kind.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

FIELD_MANAGER = "stacktools"


class KubeApiError(RuntimeError):
    """The API server answered with an error status; ``status`` and ``body`` say which."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status
        self.body = body


@dataclass
class KubeApi:
    server: str
    context: ssl.SSLContext
    token: str | None = None
    _keep: list[Any] = field(default_factory=list, repr=False)

    @classmethod
    def from_kubeconfig(cls, path: Path, context_name: str | None = None) -> KubeApi:
        """The cluster and user of ``context_name`` (default: current-context) in ``path``."""
        config = yaml.safe_load(path.read_text())
        name = context_name or config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        keep: list[Any] = []

        def as_file(data_key: str, file_key: str, source: dict[str, Any]) -> str | None:
            if source.get(file_key):
                return str((path.parent / source[file_key]).resolve())
            if source.get(data_key):
                handle = tempfile.NamedTemporaryFile(prefix="kubeapi-", suffix=".pem")  # noqa: SIM115
                handle.write(base64.b64decode(source[data_key]))
                handle.flush()
                keep.append(handle)
                return handle.name
            return None

        ca = as_file("certificate-authority-data", "certificate-authority", cluster)
        ssl_context = ssl.create_default_context(cafile=ca)
        cert = as_file("client-certificate-data", "client-certificate", user)
        key = as_file("client-key-data", "client-key", user)
        if cert and key:
            ssl_context.load_cert_chain(cert, key)
        return cls(cluster["server"].rstrip("/"), ssl_context, user.get("token"), keep)

    # requests ----------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: object = None,
        *,
        content_type: str = "application/json",
        query: dict[str, str] | None = None,
        timeout: float = 30.0,
        raw: bool = False,
    ) -> Any:
        url = self.server + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310 - https to the API server
        try:
            with urllib.request.urlopen(req, context=self.context, timeout=timeout) as response:  # noqa: S310
                text = response.read().decode()
        except urllib.error.HTTPError as exc:
            raise KubeApiError(
                method, path, exc.code, exc.read().decode(errors="replace")
            ) from None
        if raw:
            return text
        return json.loads(text) if text else None

    def get(self, path: str, **query: str) -> Any:
        return self.request("GET", path, query=query or None)

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def delete(self, path: str) -> bool:
        """Delete; False when it was not there."""
        try:
            self.request("DELETE", path)
        except KubeApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def apply(self, manifest: dict[str, Any], manager: str = FIELD_MANAGER) -> Any:
        """Server-side apply of one object (forcing conflicts: the harness owns these fields)."""
        return self.request(
            "PATCH",
            object_path(manifest),
            manifest,
            content_type="application/apply-patch+yaml",
            query={"fieldManager": manager, "force": "true"},
        )


_CORE_PLURALS = {
    "Namespace": "namespaces",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "Secret": "secrets",
    "ConfigMap": "configmaps",
    "EndpointSlice": "endpointslices",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "GatewayClass": "gatewayclasses",
    "Gateway": "gateways",
    "HTTPRoute": "httproutes",
    "TCPRoute": "tcproutes",
    "ReferenceGrant": "referencegrants",
}
_CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "GatewayClass"}


def object_path(manifest: dict[str, Any]) -> str:
    """The REST path of a manifest (kinds the harness uses: see ``_CORE_PLURALS``)."""
    api_version: str = manifest["apiVersion"]
    kind: str = manifest["kind"]
    plural = _CORE_PLURALS[kind]
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    name = manifest["metadata"]["name"]
    if kind in _CLUSTER_SCOPED:
        return f"{base}/{plural}/{name}"
    return f"{base}/namespaces/{manifest['metadata']['namespace']}/{plural}/{name}"
