"""The Helm releases as the roles' Helm tasks install them: the tests see exactly what each task
passes (tests/render runs the roles' own helm_release.yml, the one place that computes it), the
per-inventory ``*_helm_extra_values`` included, and no secret travels in a release's values
(Helm keeps them in the release's Secret and prints them with ``helm get values``)."""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.schemas

REPO = Path(__file__).resolve().parents[1]
INVENTORIES = ("local", "staging", "production")
HELM_ROLES = ("istio", "mongodb", "monitoring", "dagster")
# kubernetes.core.helm parameter -> the key of <role>_helm_releases it is taken from.
PASSED = {
    "name": "name",
    "release_namespace": "namespace",
    "chart_ref": "chart_ref",
    "chart_repo_url": "chart_repo_url",
    "chart_version": "chart_version",
    "release_values": "release_values",
    "skip_crds": "skip_crds",
    "skip_schema_validation": "skip_schema_validation",
    "disable_hook": "disable_hook",
}


def tasks(path: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for task in items:
            found.append(task)
            for key in ("block", "rescue", "always"):
                walk(task.get(key, []))

    walk(yaml.safe_load(path.read_text()) or [])
    return found


@pytest.mark.parametrize("role", HELM_ROLES)
def test_the_helm_task_passes_exactly_the_described_releases(role: str) -> None:
    """Every argument of the role's Helm install comes from <role>_helm_releases, which only
    helm_release.yml sets; the render helper runs that same file, so the tests render exactly
    what is installed."""
    folder = REPO / "roles" / role / "tasks"
    installs = [
        (path.name, task)
        for path in sorted(folder.glob("*.yml"))
        for task in tasks(path)
        if "kubernetes.core.helm" in task and task["kubernetes.core.helm"].get("state") != "absent"
    ]
    assert [name for name, _ in installs] == ["helm.yml"]
    _, install = installs[0]
    args = install["kubernetes.core.helm"]
    assert install["loop"] == f"{{{{ {role}_helm_releases }}}}"
    assert args.pop("wait") is False  # readiness is the role's own wait, switched per inventory
    assert set(args) == set(PASSED), set(args) ^ set(PASSED)
    for parameter, key in PASSED.items():
        expected = f"{{{{ item.{key} }}}}"
        if parameter == "chart_repo_url":
            expected = "{{ item.chart_repo_url or omit }}"
        assert args[parameter] == expected, parameter
    setters = [
        path.name
        for path in sorted(folder.glob("*.yml"))
        for task in tasks(path)
        if f"{role}_helm_releases" in (task.get("ansible.builtin.set_fact") or {})
    ]
    assert setters == ["helm_release.yml"]
    helm = yaml.safe_load((folder / "helm.yml").read_text())
    assert helm[0]["ansible.builtin.import_tasks"] == "helm_release.yml"
    helper = yaml.safe_load((REPO / "tests/render/render_role.yml").read_text())
    assert any(
        (task.get("ansible.builtin.include_role") or {}).get("tasks_from") == "helm_release.yml"
        for task in helper
    )


def test_every_release_is_rendered_for_every_inventory(
    rendered_releases: dict[str, dict[str, Any]],
) -> None:
    for inventory in INVENTORIES:
        releases = rendered_releases[inventory]
        assert {(r.role, name) for name, r in releases.items()} == {
            ("istio", "istio-base"),
            ("istio", "istiod"),
            ("mongodb", "mongodb-kubernetes"),
            ("monitoring", "kube-prometheus-stack"),
            ("dagster", "dagster"),
        }


def deep_subset(part: Any, whole: Any) -> bool:
    if isinstance(part, dict):
        return isinstance(whole, dict) and all(
            key in whole and deep_subset(value, whole[key]) for key, value in part.items()
        )
    return bool(part == whole)


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_the_inventorys_extra_values_reach_the_release(
    rendered_releases: dict[str, dict[str, Any]], inventory: str
) -> None:
    """`<role>_helm_extra_values` of the inventory are merged over the role's values in what the
    Helm task passes (inventories/local turns four of kube-prometheus-stack's targets off)."""
    group_vars = REPO / "inventories" / inventory / "group_vars" / "all"
    extras: dict[str, Any] = {}
    for path in group_vars.glob("*.yml"):
        for name, value in (yaml.safe_load(path.read_text()) or {}).items():
            if name.endswith("_helm_extra_values"):
                extras[name.removesuffix("_helm_extra_values")] = value
    if inventory == "local":
        assert extras["monitoring"]["kubeEtcd"] == {"enabled": False}
    releases = rendered_releases[inventory]
    for role, extra in extras.items():
        (release,) = [r for r in releases.values() if r.role == role]
        assert deep_subset(extra, release.values), f"{role}: {extra} not in {release.name}'s values"


def secret_strings(manifests: list[Any]) -> set[str]:
    """Every value of every Secret the roles render (generated test secrets among them)."""
    found: set[str] = set()
    for manifest in manifests:
        if manifest.kind != "Secret":
            continue
        for value in (manifest.doc.get("data") or {}).values():
            found.add(base64.b64decode(value).decode())
        found.update(str(value) for value in (manifest.doc.get("stringData") or {}).values())
    return {value for value in found if len(value) >= 8}


def password_keys(values: Any, path: str = "") -> list[str]:
    """Paths of keys named like a password (…password, …apiKey) that hold a value."""
    found: list[str] = []
    if isinstance(values, dict):
        for key, value in values.items():
            where = f"{path}.{key}" if path else str(key)
            named = re.search(r"(password|api_?key|token)$", str(key), re.IGNORECASE)
            if named and isinstance(value, str | int) and str(value):
                found.append(where)
            found += password_keys(value, where)
    elif isinstance(values, list):
        for index, item in enumerate(values):
            found += password_keys(item, f"{path}[{index}]")
    return found


@pytest.mark.parametrize("inventory", INVENTORIES)
def test_no_secret_is_passed_in_a_releases_values(
    rendered: dict[str, Path],
    rendered_manifests: dict[str, list[Any]],
    inventory: str,
) -> None:
    secrets = secret_strings(rendered_manifests[inventory])
    assert secrets, "the roles render no Secret with a value"
    files = sorted(rendered[inventory].glob("*/helm/*.values.yaml"))
    assert len(files) == 5
    for path in files:
        text = path.read_text()
        found = [secret[:4] + "..." for secret in secrets if secret in text]
        assert not found, f"{path.name} carries the value of a Secret ({found})"
        named = password_keys(yaml.safe_load(text))
        assert not named, f"{path.name} sets {named}"
