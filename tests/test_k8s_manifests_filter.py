"""The k8s_manifests filter (plugins/filter/k8s_manifests.py), with which the istio, mongodb and
monitoring roles read their CRD bundles: the same documents as an independent YAML 1.2-minded
reading of every pinned CRD file, through Ansible by its fully qualified name too, and a clear
error for what is not a Kubernetes object."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from plugin_files import load_plugin

from stacktools.cluster.crds import (
    PINNED,
    PROMETHEUS_OPERATOR_ALL,
    CrdLoader,
    crds_root,
)

pytestmark = pytest.mark.schemas

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "plugins" / "filter" / "k8s_manifests.py"
FILTER = "gateway_api_stack.showcase.k8s_manifests"
# What the roles read: the Gateway API bundle, the MongoDBCommunity CRD, all ten of the
# prometheus-operator's (Istio's own come with its chart).
ALL_FILES = (*PINNED, *PROMETHEUS_OPERATOR_ALL)
COMPARED = (
    "crd-alertmanagerconfigs.yaml",
    "mongodbcommunity.mongodb.com_mongodbcommunity.yaml",
    "crd-podmonitors.yaml",
    "crd-servicemonitors.yaml",
    "crd-prometheusrules.yaml",
    "gateway.networking.k8s.io_referencegrants.yaml",
)


def plugin() -> ModuleType:
    return load_plugin(PLUGIN)


def test_the_crd_files_read_as_the_api_server_reads_them() -> None:
    """Against PyYAML's pure-Python safe loader with the `=` rule (stacktools' CrdLoader, the
    schema tests' reader): the AlertmanagerConfig CRD (the `=` case), the MongoDBCommunity CRD
    and the three prometheus-operator CRDs the monitoring role requires, each whole (the larger
    files take the pure-Python loader seconds each; the Ansible test below reads all ten)."""
    parse = plugin().k8s_manifests
    root = crds_root()
    compared = [item for item in ALL_FILES if item.path.endswith(COMPARED)]
    assert len(compared) == len(COMPARED)
    for item in compared:
        text = (root / item.path).read_text()
        expected = [doc for doc in yaml.load_all(text, Loader=CrdLoader) if doc is not None]
        assert expected, item.path
        assert parse(text) == expected, item.path
    # A list of texts (one per file, as the roles read a folder) gives their documents in order.
    assert parse(["kind: A\n---\nkind: B\n", "---\n", "kind: C\n"]) == [
        {"kind": "A"},
        {"kind": "B"},
        {"kind": "C"},
    ]
    # The one place YAML 1.1 and 1.2 differ in these files: AlertmanagerConfig's bare `=`.
    (alertmanagerconfig,) = (f for f in ALL_FILES if f.path.endswith("alertmanagerconfigs.yaml"))
    assert '"="' in json.dumps(parse((root / alertmanagerconfig.path).read_text()))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("kind: [unclosed\n", "input 1 is not valid YAML"),
        (
            "---\nkind: Namespace\n---\n- a list\n",
            "document 2 of input 1 is a list, not a Kubernetes object",
        ),
        (["kind: Namespace\n", 42], "input 2 is int, not YAML text"),
        (42, "expects YAML text or a list of YAML texts, got int"),
    ],
)
def test_what_is_not_a_kubernetes_object_is_named(data: Any, message: str) -> None:
    from ansible.errors import AnsibleFilterError  # noqa: PLC0415  # Ansible's, like the plugin

    with pytest.raises(AnsibleFilterError, match=message):
        plugin().k8s_manifests(data)


def test_ansible_finds_the_filter_by_its_name_and_gets_plain_documents(
    ansible: Any, tmp_path: Path
) -> None:
    root = crds_root()
    (alertmanagerconfig,) = (f for f in ALL_FILES if f.path.endswith("alertmanagerconfigs.yaml"))
    folder = (root / alertmanagerconfig.path).parent
    playbook, out = tmp_path / "read.yml", tmp_path / "kinds.json"
    playbook.write_text(
        yaml.safe_dump(
            [
                {
                    "name": "Read a CRD folder as the monitoring role does",
                    "hosts": "localhost",
                    "connection": "local",
                    "vars": {"ansible_python_interpreter": sys.executable},
                    "gather_facts": False,
                    "tasks": [
                        {
                            "name": "Write the kinds of the CRDs read",
                            "ansible.builtin.copy": {
                                "content": (
                                    "{{ query('ansible.builtin.file', *query('ansible.builtin."
                                    f"fileglob', '{folder}/*.yaml')) | {FILTER}"
                                    " | map(attribute='spec.names.kind') | list | to_json }}"
                                ),
                                "dest": str(out),
                                "mode": "0600",
                            },
                        }
                    ],
                }
            ]
        )
    )
    result = ansible.run("ansible-playbook", "-i", "localhost,", str(playbook))
    assert result.returncode == 0, result.stdout + result.stderr
    kinds = {
        "AlertmanagerConfig",
        "Alertmanager",
        "PodMonitor",
        "Probe",
        "PrometheusAgent",
        "Prometheus",
        "PrometheusRule",
        "ScrapeConfig",
        "ServiceMonitor",
        "ThanosRuler",
    }
    assert sorted(json.loads(out.read_text())) == sorted(kinds)
