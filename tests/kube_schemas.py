"""Validation of Kubernetes objects as the API server of Kubernetes 1.36 would do it (CEL rules of
CRDs excepted): built-in kinds against kubernetes-validate's strict 1.36 schemas, custom resources
against the openAPIV3Schema of the real upstream CRDs (stacktools.cluster.crds), metadata (names,
labels, namespace presence) by the rules the schemas cannot express. Used by the tests of the
roles' own manifests (test_manifests.py) and of the Helm charts' output (test_charts.py).
"""

from __future__ import annotations

import json
import re
from functools import cache
from importlib import resources
from typing import Any

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

from stacktools.cluster.crds import (
    PROMETHEUS_OPERATOR_ALL,
    CrdError,
    crds_root,
    custom_resource_schema,
    load_crds,
)

KUBERNETES_VERSION = "1.36"
_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = {"$ref": f"{_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
# Cluster-scoped built-in kinds (every other built-in kind is namespaced).
CLUSTER_SCOPED_CORE = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "PersistentVolume",
    "CustomResourceDefinition",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding",
    "PriorityClass",
    "StorageClass",
    "IngressClass",
    "APIService",
    "CSIDriver",
    "RuntimeClass",
}
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


@cache
def registry() -> Registry:  # type: ignore[type-arg]
    """kubernetes-validate's 1.36 strict definitions, for ObjectMeta of custom resources."""
    folder = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    definitions = json.loads((folder / "v1.36.0-local-strict" / "_definitions.json").read_text())
    return Registry().with_resource(_DEFINITIONS, Resource.from_contents(definitions))


@cache
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """The pinned CRDs (Gateway API v1.5.1, Istio 1.30.3, MongoDB, prometheus-operator v0.93.1)."""
    root = crds_root()
    return {**load_crds(root), **load_crds(root, PROMETHEUS_OPERATOR_ALL)}


def field_path(error: jsonschema.ValidationError) -> str:
    path = ""
    for part in error.absolute_path:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(document)"


def metadata_errors(doc: dict[str, Any], namespaced: bool) -> list[str]:
    """Checks the schemas cannot express: names, label syntax, namespace presence."""
    meta = doc.get("metadata") or {}
    name, errors = str(meta.get("name", "")), []
    pattern = DNS_LABEL if doc.get("kind") in {"Namespace", "Service"} else DNS_SUBDOMAIN
    if not pattern.match(name) or len(name) > 253:
        errors.append(f"metadata.name: {name!r} is not a valid {doc.get('kind')} name")
    if namespaced != bool(meta.get("namespace")):
        errors.append(
            "metadata.namespace: "
            + ("missing on a namespaced kind" if namespaced else "set on a cluster-scoped kind")
        )
    for key, value in (meta.get("labels") or {}).items():
        valid = LABEL_KEY.match(str(key)) and LABEL_VALUE.match(str(value))
        if not valid or len(str(value)) > 63:
            errors.append(f"metadata.labels.{key}: {value!r} is not a valid label")
    return errors


def document_errors(doc: dict[str, Any]) -> list[str]:
    """What the API server would refuse in ``doc`` (CEL rules of CRDs excepted)."""
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return ["apiVersion and kind are required"]
    group, _, version = api_version.rpartition("/")
    crd = crds().get((group, kind))
    if crd is None:
        errors = metadata_errors(doc, namespaced=kind not in CLUSTER_SCOPED_CORE)
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{field_path(exc)}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(f"no Kubernetes {KUBERNETES_VERSION} schema and no CRD: {exc.message}")
        return errors
    errors = metadata_errors(doc, namespaced=crd["spec"]["scope"] == "Namespaced")
    try:
        schema = custom_resource_schema(crd, version)
    except CrdError as exc:
        return [*errors, f"apiVersion: {exc}"]
    schema["properties"]["metadata"] = OBJECT_META
    validator = jsonschema.Draft202012Validator(schema, registry=registry())
    errors += [f"{field_path(e)}: {e.message}" for e in validator.iter_errors(doc)]
    return errors
