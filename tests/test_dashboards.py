"""Dashboards and alert rules ask Prometheus for metrics the apiserver really exports, with the
labels the ServiceMonitor really gives them, and reach Grafana through its sidecar label."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from apiserver.metrics import Metrics

pytestmark = pytest.mark.schemas

APISERVER_METRIC = re.compile(r"\b(apiserver_[a-z_]+)\b")


def exported_names() -> set[str]:
    """Every sample name of a real apiserver metrics registry after one 500 answer."""
    metrics = Metrics()
    metrics.observe("POST", "/internal-insert", 500, 0.01)
    text = metrics.exposition().decode()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1].isalpha()}


def dashboards(manifests: list[Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for m in manifests:
        if m.kind == "ConfigMap" and m.name.startswith("dashboard-"):
            ((key, text),) = m.doc["data"].items()
            found[key] = json.loads(text)
    return found


def test_dashboards_query_what_the_apiserver_exports(
    rendered_manifests: dict[str, list[Any]], rendered_values: dict[str, Any]
) -> None:
    manifests = rendered_manifests["local"]
    boards = dashboards(manifests)
    assert set(boards) == {"apiserver.json", "gateway.json"}
    exported = exported_names()
    assert {"apiserver_http_requests_total", "apiserver_http_errors_total"} <= exported
    used = set()
    for name, board in boards.items():
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), name
        for panel in board["panels"]:
            assert panel["targets"], f"{name}: panel {panel['title']} has no query"
            for target in panel["targets"]:
                used |= set(APISERVER_METRIC.findall(target["expr"]))
    assert used, "the apiserver dashboard queries no apiserver metric"
    assert used <= exported, f"queried but not exported: {used - exported}"
    assert {b["uid"] for b in boards.values()} == {"gas-apiserver", "gas-gateway"}
    sidecar = rendered_values["local"]["monitoring/kube-prometheus-stack"]["grafana"]
    label = sidecar["sidecar"]["dashboards"]["label"]
    value = sidecar["sidecar"]["dashboards"]["labelValue"]
    for m in manifests:
        if m.kind == "ConfigMap" and m.name.startswith("dashboard-"):
            assert m.doc["metadata"]["labels"][label] == value


def test_alert_rules_use_exported_metrics_and_real_labels(
    rendered_manifests: dict[str, list[Any]],
) -> None:
    manifests = rendered_manifests["local"]
    (rule,) = [m.doc for m in manifests if m.kind == "PrometheusRule"]
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert set(alerts) == {"ApiserverHigh5xxRatio", "ApiserverDown", "MongoDBDown"}
    exported = exported_names()
    for alert in alerts.values():
        assert set(APISERVER_METRIC.findall(alert["expr"])) <= exported, alert["alert"]
    assert 'status=~"5.."' in alerts["ApiserverHigh5xxRatio"]["expr"]
    (monitor,) = [m.doc for m in manifests if m.kind == "ServiceMonitor"]
    (service,) = [m.doc for m in manifests if m.kind == "Service" and m.name == "apiserver"]
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    assert f'job="{job}"' in alerts["ApiserverDown"]["expr"]
    (replica_set,) = [m.doc for m in manifests if m.kind == "MongoDBCommunity"]
    # The operator names the StatefulSet after the MongoDBCommunity.
    assert f'statefulset="{replica_set["metadata"]["name"]}"' in alerts["MongoDBDown"]["expr"]
