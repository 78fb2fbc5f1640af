"""stacktools.cluster.crds: the pinned CRD files, the offline/downloaded CRDs folder, and the
translation of structural schemas into JSON Schemas that refuse what the API server refuses."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from stacktools.cluster.crds import (
    ISTIOD_BUNDLE,
    PINNED,
    PROMETHEUS_OPERATOR_ALL,
    CrdError,
    CrdFile,
    crds_root,
    custom_resource_schema,
    download,
    git_blob_sha1,
    load_crds,
    to_json_schema,
)

pytestmark = pytest.mark.schemas


def test_the_crds_folder_holds_exactly_the_pinned_files() -> None:
    root = crds_root()
    for item in (*PINNED, *ISTIOD_BUNDLE, *PROMETHEUS_OPERATOR_ALL):
        data = (root / item.path).read_bytes()
        assert git_blob_sha1(data) == item.blob_sha1, item.path
        assert item.url.startswith("https://raw.githubusercontent.com/")
        assert item.url.endswith("/" + Path(item.path).name)


def test_git_blob_sha1_is_what_git_computes() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert git_blob_sha1(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_download_keeps_verified_files_and_refuses_bad_ones(tmp_path: Path) -> None:
    item = next(p for p in PINNED if p.path.startswith("mongodb/"))
    target = tmp_path / "crds" / item.path
    target.parent.mkdir(parents=True)
    shutil.copy(crds_root() / item.path, target)
    assert download(tmp_path / "crds", [item]) == tmp_path / "crds"  # verified: no fetch
    target.write_text("tampered")
    insecure = CrdFile(item.path, "http://example.invalid/crd.yaml", item.blob_sha1)
    with pytest.raises(CrdError, match="not https"):
        download(tmp_path / "crds", [insecure])


def test_a_verified_mirror_copy_is_used_and_a_tampered_one_is_not(tmp_path: Path) -> None:
    item = next(p for p in PINNED if p.path.startswith("mongodb/"))
    mirror = tmp_path / "mirror"
    (mirror / item.path).parent.mkdir(parents=True)
    shutil.copy(crds_root() / item.path, mirror / item.path)
    offline = CrdFile(item.path, "https://example.invalid/crd.yaml", item.blob_sha1)
    dest = download(tmp_path / "a", [offline], timeout=5, mirrors=[mirror])
    assert git_blob_sha1((dest / item.path).read_bytes()) == item.blob_sha1
    (mirror / item.path).write_text("tampered")
    with pytest.raises(CrdError, match=r"cannot download https://example\.invalid"):
        download(tmp_path / "b", [offline], timeout=5, mirrors=[mirror])
    assert not (tmp_path / "b" / item.path).exists()


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CrdError, match=r"gateway-api-v1\.5\.1/experimental/.* is missing"):
        load_crds(tmp_path)


def valid(schema: dict[str, Any], value: Any) -> bool:
    return jsonschema.Draft202012Validator(to_json_schema(schema)).is_valid(value)


def test_structural_schema_semantics() -> None:
    obj = {"type": "object", "properties": {"a": {"type": "string"}}}
    assert valid(obj, {"a": "x"})
    assert not valid(obj, {"a": "x", "b": 1})  # unknown fields are refused
    assert valid({**obj, "x-kubernetes-preserve-unknown-fields": True}, {"b": 1})
    assert valid({"type": "object", "additionalProperties": {"type": "string"}}, {"k": "v"})
    port = {"x-kubernetes-int-or-string": True, "description": "a port"}
    assert valid(port, 80)
    assert valid(port, "http")
    assert not valid(port, 8.5)
    assert valid({"type": "string", "nullable": True}, None)
    assert not valid({"type": "string"}, None)
    exclusive = {"type": "integer", "minimum": 0, "exclusiveMinimum": True}
    assert not valid(exclusive, 0)
    assert valid(exclusive, 1)
    assert not valid({"type": "array", "x-kubernetes-list-type": "set"}, ["a", "a"])
    embedded = {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {}}
    assert valid(embedded, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}})
    # CEL rules are not evaluated here (the control-plane tests run them on a real API server).
    assert valid({"type": "string", "x-kubernetes-validations": [{"rule": "false"}]}, "x")


def test_versions_must_be_served() -> None:
    crds = load_crds(crds_root())
    tcproute = crds[("gateway.networking.k8s.io", "TCPRoute")]
    assert custom_resource_schema(tcproute, "v1alpha2")["additionalProperties"] is False
    with pytest.raises(CrdError, match="has no version v1"):
        custom_resource_schema(tcproute, "v1")
