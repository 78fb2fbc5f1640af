"""Every manifest every role applies, rendered for every inventory, is one the API server of
Kubernetes 1.36 would accept: built-in kinds against kubernetes-validate's strict 1.36 schemas,
custom resources against the openAPIV3Schema of the real upstream CRDs (stacktools.cluster.crds)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_schemas import document_errors

pytestmark = pytest.mark.schemas

INVENTORIES = ("local", "staging", "production")
ROLES_DIR = Path(__file__).resolve().parents[1] / "roles"


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
