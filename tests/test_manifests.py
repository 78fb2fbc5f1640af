"""Every manifest every role applies, rendered for every inventory, is one the API server of
Kubernetes 1.36 would accept: built-in kinds against kubernetes-validate's strict 1.36 schemas,
custom resources against the openAPIV3Schema of the real upstream CRDs (stacktools.cluster.crds)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from referencing import Registry, Resource

from stacktools.cluster.crds import CrdError, crds_root, custom_resource_schema, load_crds

pytestmark = pytest.mark.schemas

KUBERNETES_VERSION = "1.36"
INVENTORIES = ("local", "staging", "production")
ROLES_DIR = Path(__file__).resolve().parents[1] / "roles"
_DEFINITIONS = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = {"$ref": f"{_DEFINITIONS}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
CLUSTER_SCOPED_CORE = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume"}
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
    return load_crds(crds_root())


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


def describe(doc: dict[str, Any], index: int) -> str:
    meta = doc.get("metadata") or {}
    where = "/".join(part for part in (meta.get("namespace"), meta.get("name")) if part)
    return f"document {index} ({doc.get('kind')} {where})"


def manifests(folder: Path) -> Iterator[tuple[str, int, dict[str, Any]]]:
    """(template path, document index, document) for every rendered manifest."""
    for path in sorted(folder.glob("*/*.yaml")):
        template = f"roles/{path.parent.name}/templates/{path.name}.j2"
        docs = [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
        for index, doc in enumerate(docs, start=1):
            yield template, index, doc


def all_errors(folder: Path, inventory: str) -> list[str]:
    return [
        f"{template} [inventories/{inventory}] {describe(doc, index)}: {error}"
        for template, index, doc in manifests(folder)
        for error in document_errors(doc)
    ]


def find(folder: Path, kind: str, name: str) -> dict[str, Any]:
    for _, _, doc in manifests(folder):
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return copy.deepcopy(doc)
    raise AssertionError(f"no rendered {kind} {name} in {folder}")


@pytest.mark.slow
def test_every_template_is_rendered_and_proven_somewhere(rendered: dict[str, Path]) -> None:
    """Each template renders for every inventory, with documents in at least one of them
    (a template may render nothing for an inventory whose data is empty: production declares
    no TCPRoute), so every manifest a role can apply passes through the validation below."""
    templates = sorted(ROLES_DIR.glob("*/templates/*.yaml.j2"))
    assert len(templates) > 30
    for template in templates:
        counts = {}
        role, name = template.parent.parent.name, template.name.removesuffix(".j2")
        for inventory in INVENTORIES:
            out = rendered[inventory] / role / name
            assert out.is_file(), f"{template} was not rendered for inventories/{inventory}"
            counts[inventory] = sum(1 for doc in yaml.safe_load_all(out.read_text()) if doc)
        assert any(counts.values()), f"{template} renders no document in any inventory: {counts}"


@pytest.mark.slow
@pytest.mark.parametrize("inventory", INVENTORIES)
def test_rendered_manifests_are_valid(rendered: dict[str, Path], inventory: str) -> None:
    errors = all_errors(rendered[inventory], inventory)
    assert not errors, "manifests the API server would refuse:\n" + "\n".join(errors)


def test_validator_catches_unknown_field_and_wrong_type_in_a_core_kind(
    rendered: dict[str, Path],
) -> None:
    good = find(rendered["local"], "Deployment", "apiserver")
    assert document_errors(good) == []
    unknown = copy.deepcopy(good)
    unknown["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    (error,) = document_errors(unknown)
    assert error.startswith("spec.template.spec.containers[0]: ")
    assert "imagePullPolicyy" in error
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["revisionHistoryLimit"] = "five"
    (error,) = document_errors(wrong_type)
    assert error.startswith("spec.revisionHistoryLimit: ")


def test_validator_catches_unknown_field_and_wrong_type_in_a_custom_resource(
    rendered: dict[str, Path],
) -> None:
    good = find(rendered["local"], "HTTPRoute", "apiserver")
    assert document_errors(good) == []
    unknown = copy.deepcopy(good)
    unknown["spec"]["rules"][0]["backendRefs"][0]["wieght"] = 10
    (error,) = document_errors(unknown)
    assert error.startswith("spec.rules[0].backendRefs[0]: ")
    assert "wieght" in error
    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["rules"][0]["backendRefs"][0]["port"] = "eight thousand"
    errors = document_errors(wrong_type)
    assert any(e.startswith("spec.rules[0].backendRefs[0].port: ") for e in errors)
    bad_label = copy.deepcopy(good)
    bad_label["metadata"]["labels"]["tier"] = 3
    assert any(e.startswith("metadata.labels.tier") for e in document_errors(bad_label))


def test_validator_knows_served_versions_and_open_fields(rendered: dict[str, Path]) -> None:
    route = find(rendered["local"], "TCPRoute", "mongodb")
    assert document_errors(route) == []
    route["apiVersion"] = "gateway.networking.k8s.io/v1"  # TCPRoute v1 does not exist in v1.5.1
    assert any(e.startswith("apiVersion: ") for e in document_errors(route))
    replica_set = find(rendered["local"], "MongoDBCommunity", "mongodb")
    # statefulSet.spec keeps unknown fields (x-kubernetes-preserve-unknown-fields): a whole
    # StatefulSet spec goes there, so any field is accepted...
    replica_set["spec"]["statefulSet"]["spec"]["anything"] = {"goes": True}
    assert document_errors(replica_set) == []
    # ...but not next to it.
    replica_set["spec"]["statefulSet"]["anything"] = True
    assert any("anything" in e for e in document_errors(replica_set))


def test_error_messages_name_template_inventory_document_and_field(
    rendered: dict[str, Path], tmp_path: Path
) -> None:
    doc = find(rendered["local"], "PodDisruptionBudget", "apiserver")
    doc["spec"]["minAvailable"] = [1]
    (tmp_path / "apiserver").mkdir()
    (tmp_path / "apiserver" / "pdb.yaml").write_text(yaml.safe_dump(doc))
    (message,) = all_errors(tmp_path, "local")
    assert message.startswith(
        "roles/apiserver/templates/pdb.yaml.j2 [inventories/local] "
        "document 1 (PodDisruptionBudget apiserver/apiserver): spec.minAvailable: "
    )
