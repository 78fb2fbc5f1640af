"""Every role keeps the project's conventions: its variables are prefixed with its name,
documented in defaults, argument_specs and README alike; everything it applies comes from a
template with server-side apply; every task that touches a secret value hides it (no_log)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.lint

ROLES_DIR = Path(__file__).resolve().parents[1] / "roles"
ROLES = ("istio", "mongodb", "monitoring", "apiserver", "dagster", "gateway")
SECRET_FACTS = ("password", "api_key", "uri", "config_hash")


def tasks_of(role: str) -> list[tuple[str, dict[str, Any]]]:
    """(file, task) for every task of the role, blocks flattened."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(file: str, items: list[dict[str, Any]]) -> None:
        for task in items:
            found.append((file, task))
            for key in ("block", "rescue", "always"):
                walk(file, task.get(key, []))

    for path in sorted((ROLES_DIR / role / "tasks").glob("*.yml")):
        walk(path.name, yaml.safe_load(path.read_text()) or [])
    return found


@pytest.mark.parametrize("role", ROLES)
def test_variables_are_prefixed_specified_and_documented(role: str) -> None:
    defaults = yaml.safe_load((ROLES_DIR / role / "defaults" / "main.yml").read_text())
    specs = yaml.safe_load((ROLES_DIR / role / "meta" / "argument_specs.yml").read_text())
    readme = (ROLES_DIR / role / "README.md").read_text()
    main = specs["argument_specs"]["main"]["options"]
    assert set(defaults) == set(main), (
        f"defaults and argument_specs differ: {set(defaults) ^ set(main)}"
    )
    assert specs["argument_specs"]["teardown"]["options"] == main
    for name, option in main.items():
        assert name.startswith(f"{role}_"), name
        assert option.get("type"), f"{name} has no type"
        assert option.get("description"), f"{name} has no description"
        assert f"`{name}`" in readme, f"{name} missing from README.md"
    for _, task in tasks_of(role):
        for fact in task.get("ansible.builtin.set_fact", {}) or {}:
            assert fact.startswith(f"{role}_"), f"set_fact {fact} lacks the role prefix"
        if "register" in task:
            assert task["register"].startswith(f"{role}_"), task["register"]


@pytest.mark.parametrize("role", ROLES)
def test_boolean_switches_are_read_with_the_bool_filter(role: str) -> None:
    """`-e {role}_wait=false` arrives as a string; only `| bool` reads it as false."""
    specs = yaml.safe_load((ROLES_DIR / role / "meta" / "argument_specs.yml").read_text())
    switches = [
        name
        for name, option in specs["argument_specs"]["main"]["options"].items()
        if option["type"] == "bool"
    ]
    assert switches
    pattern = re.compile(r"\b(" + "|".join(switches) + r")\b(?!\s*\|\s*bool)")
    sources = [*(ROLES_DIR / role / "tasks").glob("*.yml")]
    sources += [*(ROLES_DIR / role / "templates").rglob("*.j2")]
    for path in sources:
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            condition = "when:" in line or "{% if" in line or "{% elif" in line or " if " in line
            if condition and not line.lstrip().startswith(("#", "{#")):
                assert not pattern.search(line), f"{path.name}:{number}: {line.strip()}"


@pytest.mark.parametrize("role", ROLES)
def test_objects_are_applied_from_templates_server_side(role: str) -> None:
    applied = 0
    for file, task in tasks_of(role):
        args = task.get("kubernetes.core.k8s")
        if not args or args.get("state") == "absent":
            continue
        applied += 1
        assert args.get("apply") is True, f"{file}: {task['name']}"
        assert args.get("server_side_apply", {}).get("field_manager") == "gateway-api-stack"
        assert args.get("template") or file in {"crds.yml", "crd.yml"}, (
            f"{file}: {task['name']} applies an inline definition, not a template"
        )
    assert applied > 0


@pytest.mark.parametrize("role", ROLES)
def test_tasks_touching_secret_values_are_no_log(role: str) -> None:
    for file, task in tasks_of(role):
        where = f"{file}: {task['name']}"
        reads_secret = (task.get("kubernetes.core.k8s_info") or {}).get("kind") == "Secret"
        template = str((task.get("kubernetes.core.k8s") or {}).get("template", ""))
        writes_secret = "secret" in template
        facts = task.get("ansible.builtin.set_fact") or {}
        sets_secret = any(word in fact for fact in facts for word in SECRET_FACTS)
        if reads_secret or writes_secret or sets_secret:
            assert task.get("no_log") is True, where
        assert "ignore_errors" not in task, where
