"""The READMEs say what the repository does: the test command CI runs, the variables the
inventory table names, the roles it links, and the apiserver's settings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from apiserver.settings import Settings

pytestmark = pytest.mark.lint

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def section(text: str, title: str) -> str:
    """The text under ``## title`` up to the next heading of the same level."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    assert match, f"README.md has no section {title!r}"
    return match.group(1)


def defined_variables() -> set[str]:
    """Every variable a role defaults or an inventory sets."""
    names: set[str] = set()
    files = [
        *REPO.glob("roles/*/defaults/main.yml"),
        *REPO.glob("inventories/*/group_vars/all/*.yml"),
    ]
    for path in files:
        names.update(yaml.safe_load(path.read_text()) or {})
    for hosts in REPO.glob("inventories/*/hosts.yml"):
        names.update(yaml.safe_load(hosts.read_text())["all"].get("vars", {}))
    return names


def test_ci_runs_the_test_command_the_readme_gives() -> None:
    commands = section(README, "Two commands")
    assert re.search(r"^make test\b", commands, re.MULTILINE)
    assert re.search(r"^make deploy\b", commands, re.MULTILINE)
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^exec make test$", ci, re.MULTILINE)


def test_every_inventory_variable_in_the_table_exists() -> None:
    table = section(README, "Inventories")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    named = {name for row in rows for name in re.findall(r"`([a-z][a-z0-9_]+)`", row.split("|")[1])}
    assert len(named) >= 20, named
    # `apiserver_hpa_min_replicas` / `_max_replicas`: the suffix form names a sibling.
    missing = sorted(name for name in named if name not in defined_variables())
    assert missing == [], f"README.md names variables nothing defines: {missing}"


def test_the_role_table_links_every_role_in_site_order() -> None:
    site = yaml.safe_load((REPO / "playbooks" / "site.yml").read_text())
    order = [entry["role"] for play in site for entry in play.get("roles", [])]
    assert len(order) == 6, order
    linked = re.findall(r"^\| \[`(\w+)`\]\(roles/(\w+)/README\.md\)", README, re.MULTILINE)
    assert [name for name, _ in linked] == order
    assert all(
        name == folder and (REPO / "roles" / folder / "README.md").is_file()
        for name, folder in linked
    )


def test_the_apiserver_readme_lists_exactly_its_settings() -> None:
    readme = (REPO / "services" / "apiserver" / "README.md").read_text()
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    listed: set[str] = set()
    for cell in re.findall(r"^\| (`APISERVER_[^|]+)\|", table, re.MULTILINE):
        names = re.findall(r"`(APISERVER_[A-Z_]+|_[A-Z_]+)`", cell)
        stem = names[0].rsplit("_", 1)[0]  # `APISERVER_HOST`, `_PORT`: siblings of the first
        listed.update(name if name.startswith("APISERVER_") else stem + name for name in names)
    expected = {"APISERVER_" + field.upper() for field in Settings.model_fields}
    assert listed == expected
