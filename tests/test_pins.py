"""Versions that must move together stay together."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from ansible.galaxy.dependency_resolution.versioning import meets_requirements

from stacktools.builds import charts, kubernetes_core

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]


def locked_version(package: str) -> str:
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    versions = {p["version"] for p in lock["package"] if p["name"] == package}
    assert len(versions) == 1, f"uv.lock holds {package} at {sorted(versions)}"
    return versions.pop()


def role_default(role: str, variable: str) -> str:
    defaults = yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
    return str(defaults[variable])


def test_dagster_chart_matches_the_pipeline_image() -> None:
    # The chart's webserver and daemon load the same instance and gRPC API as the user code
    # (and the run workers started from the pipeline image): one Dagster version for both.
    assert role_default("dagster", "dagster_chart_version") == locked_version("dagster")


def test_dagster_extensions_match_dagster() -> None:
    # dagster-k8s / dagster-postgres 0.X.Y are released with dagster 1.(X-16).Y.
    major, minor, patch = locked_version("dagster").split(".")
    expected = f"0.{int(minor) + 16}.{patch}"
    assert major == "1"
    assert locked_version("dagster-k8s") == expected
    assert locked_version("dagster-postgres") == expected


def test_the_charts_of_the_tests_are_the_roles_pins() -> None:
    """stacktools.builds.charts (what the set-up step pulls, what the tests render) pins the
    chart versions and repositories the roles install."""
    defaults = {
        role: yaml.safe_load((REPO / "roles" / role / "defaults" / "main.yml").read_text())
        for role in ("istio", "mongodb", "monitoring", "dagster")
    }
    istio = (defaults["istio"]["istio_version"], defaults["istio"]["istio_helm_repo_url"])
    roles = {
        "istio-base": istio,
        "istiod": istio,
        "mongodb-kubernetes": (
            defaults["mongodb"]["mongodb_operator_chart_version"],
            defaults["mongodb"]["mongodb_operator_chart_repo_url"],
        ),
        "kube-prometheus-stack": (
            defaults["monitoring"]["monitoring_chart_version"],
            defaults["monitoring"]["monitoring_chart_repo_url"],
        ),
        "dagster": (
            defaults["dagster"]["dagster_chart_version"],
            defaults["dagster"]["dagster_chart_repo_url"],
        ),
    }
    pinned = {chart.release: (chart.version, chart.repo_url) for chart in charts.PINNED}
    assert pinned == roles
    # The control plane's inventory falls back to the stand-in only when the pinned file is absent.
    inventory = (REPO / "inventories/controlplane/group_vars/all/charts.yml").read_text()
    assert f"dagster-{roles['dagster'][0]}.tgz" in inventory
    assert f"else '{roles['dagster'][0]}'" in inventory


def test_the_preflight_and_the_set_up_agree_on_the_kubernetes_core_minimums() -> None:
    preflight = (REPO / "playbooks/tasks/preflight.yml").read_text()
    minimum = re.search(r'stack_kubernetes_core_minimum: "([0-9.]+)"', preflight)
    helm4 = re.search(r'stack_kubernetes_core_helm4_minimum: "([0-9.]+)"', preflight)
    assert minimum
    assert helm4
    checker = (REPO / "tools/check_collections.py").read_text()
    assert f'BUNDLED_MINIMUM = {{"kubernetes.core": "{minimum.group(1)}"}}' in checker
    requirements = yaml.safe_load((REPO / "collections/requirements.yml").read_text())
    (core,) = [c for c in requirements["collections"] if c["name"] == "kubernetes.core"]
    assert core["version"].startswith(f">={helm4.group(1)},")


def test_the_helm_4_tests_use_a_kubernetes_core_the_requirements_accept() -> None:
    """tests/test_helm4_release.py stands for a user's Galaxy install: its kubernetes.core
    must be one collections/requirements.yml accepts."""
    requirements = yaml.safe_load((REPO / "collections/requirements.yml").read_text())
    (core,) = [c for c in requirements["collections"] if c["name"] == "kubernetes.core"]
    pinned = kubernetes_core.KUBERNETES_CORE_HELM4
    assert pinned.name == "kubernetes.core"
    assert meets_requirements(pinned.version, core["version"]), (pinned.version, core["version"])
