"""What changes when the cluster has more than one MongoDB member or more than one node, checked on
the manifests each inventory renders and on the roles' own variable checks:

* MongoDB reaches the Gateway's TCP port 27018 only where writes through it always reach the
  primary: a single-member replica set (a TCP proxy cannot tell the primary from a secondary);
* the Delta table's volume is one every run pod can mount: ReadWriteOnce only on kind's single
  node, ReadWriteMany with a named StorageClass (or S3) on staging and production.

The refusals that need the cluster (nodes, StorageClasses) are proven on the control plane:
tests/test_multinode_controlplane.py."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

pytestmark = pytest.mark.schemas

INVENTORIES = ("local", "staging", "production")
ERROR = re.compile(r"^\[ERROR\]: (.*?)(?=^Origin:|^\S+: \[|\Z)", re.MULTILINE | re.DOTALL)


def docs(manifests: list[Any], kind: str) -> list[dict[str, Any]]:
    return [m.doc for m in manifests if m.kind == kind]


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_mongodb_is_exposed_only_where_writes_reach_the_primary(
    rendered_manifests: dict[str, list[Any]], inventory: str
) -> None:
    manifests = rendered_manifests[inventory]
    (replica_set,) = docs(manifests, "MongoDBCommunity")
    members = replica_set["spec"]["members"]
    services = {(m.namespace, m.name) for m in manifests if m.kind == "Service"}
    (gateway,) = docs(manifests, "Gateway")
    tcp_listeners = [item for item in gateway["spec"]["listeners"] if item["protocol"] == "TCP"]
    to_mongodb = [
        ref
        for route in docs(manifests, "TCPRoute")
        for rule in route["spec"]["rules"]
        for ref in rule["backendRefs"]
        if ref.get("namespace") == "mongodb"
    ]
    if members > 1:
        # Nothing in front of several members: no Service, no route, no listener.
        assert ("mongodb", "mongodb-gateway") not in services
        assert to_mongodb == [], f"{inventory}: {members} members exposed through TCP"
        assert [item["port"] for item in tcp_listeners if item["port"] == 27018] == []
    for ref in to_mongodb:
        assert members == 1, f"{inventory}: a TCPRoute reaches a {members}-member replica set"
        assert ref["name"] == "mongodb-gateway"
        assert ("mongodb", ref["name"]) in services
    if inventory == "local":
        assert members == 1
        assert [item["port"] for item in tcp_listeners] == [27018]
        assert len(to_mongodb) == 1


def check_vars(ansible: Any, inventory: str, extra: dict[str, Any]) -> tuple[int, list[str], str]:
    """The roles' variable checks with ``extra``; staging and production get the tests' registry
    (tests/conftest.py) so that only the variable under test is wrong."""
    if inventory in ("staging", "production"):
        extra = {"stack_image_registry": "registry.example.com/gateway-api-stack", **extra}
    result = ansible.run(
        "ansible-playbook", "-i", f"inventories/{inventory}", "tests/render/check_vars.yml",
        "-e", json.dumps(extra),
    )  # fmt: skip
    errors = [" ".join(error.split()) for error in ERROR.findall(result.stdout)]
    return result.returncode, errors, result.stdout


def test_the_mongodb_role_refuses_a_gateway_service_in_front_of_several_members(
    ansible: Any,
) -> None:
    code, errors, output = check_vars(ansible, "staging", {"mongodb_gateway_service_enabled": True})
    assert code != 0, output[-2000:]
    assert any(
        "mongodb: mongodb_gateway_service_enabled can only be true with mongodb_members: 1 "
        "(got 3 members)"
        in error
        and "NotWritablePrimary" in error
        for error in errors
    ), errors
    code, errors, output = check_vars(
        ansible, "local", {"mongodb_members": 1, "mongodb_gateway_service_enabled": True}
    )
    assert code == 0, output[-2000:]


def test_staging_and_production_put_the_delta_table_where_every_node_reaches_it(
    rendered_manifests: dict[str, list[Any]],
) -> None:
    for inventory in ("staging", "production"):
        claims = [
            d for d in docs(rendered_manifests[inventory], "PersistentVolumeClaim")
            if d["metadata"]["name"] == "pipeline-delta"
        ]  # fmt: skip
        (claim,) = claims
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"], inventory
        assert claim["spec"].get("storageClassName"), f"{inventory}: RWX needs a named class"
    (local,) = [
        d for d in docs(rendered_manifests["local"], "PersistentVolumeClaim")
        if d["metadata"]["name"] == "pipeline-delta"
    ]  # fmt: skip
    assert local["spec"]["accessModes"] == ["ReadWriteOnce"]  # kind: a single node


def test_read_write_many_without_a_storage_class_is_refused(ansible: Any) -> None:
    code, errors, output = check_vars(ansible, "staging", {"dagster_delta_pvc_storage_class": ""})
    assert code != 0, output[-2000:]
    assert any(
        "dagster: dagster_delta_pvc_storage_class must name a StorageClass that provides "
        "ReadWriteMany when dagster_delta_pvc_access_mode is ReadWriteMany" in error
        for error in errors
    ), errors
    code, errors, output = check_vars(
        ansible, "local", {"dagster_delta_pvc_access_mode": "ReadWriteSometimes"}
    )
    assert code != 0
    assert any("dagster_delta_pvc_access_mode" in error for error in errors), errors
