"""Fixtures of the repository-level tests: running Ansible the way the Makefile does, and the
manifests of every role rendered for every inventory (tests/render/render.yml)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
INVENTORIES = ("local", "staging", "production")
ROLES = ("istio", "mongodb", "monitoring", "apiserver", "dagster", "gateway")
RENDER_PLAYBOOK = REPO / "tests" / "render" / "render.yml"
# Staging and production pull the images from a registry, which the inventory owner names
# (stack_image_registry); the roles refuse to run without one. This is the tests' name for it.
TEST_REGISTRY = "registry.example.com/gateway-api-stack"
NEEDS_REGISTRY = ("staging", "production")


def registry_args(inventory: str) -> list[str]:
    """``-e stack_image_registry=...`` where the inventory needs a registry."""
    return ["-e", f"stack_image_registry={TEST_REGISTRY}"] if inventory in NEEDS_REGISTRY else []


@dataclass(frozen=True)
class Ansible:
    """Runs ansible-* commands of the project's virtualenv with the project's configuration."""

    bin_dir: Path

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            # The stack_image_tag lookup lives next to the playbooks; other playbooks need it too.
            ANSIBLE_LOOKUP_PLUGINS=str(REPO / "playbooks" / "lookup_plugins"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_LOCAL_TEMP=str(REPO / ".cache" / "ansible-tmp"),
            PATH=f"{self.bin_dir}{os.pathsep}{env.get('PATH', '')}",
        )
        env.update(extra)
        return env

    def command(self, tool: str, *args: str) -> list[str]:
        return [str(self.bin_dir / tool), *args]

    def run(
        self, tool: str, *args: str, timeout: float = 600, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(tool, *args),
            cwd=REPO,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, tool: str, args: Sequence[str], **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(tool, *args),
            cwd=REPO,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


@pytest.fixture(scope="session")
def ansible() -> Ansible:
    return Ansible(Path(sys.executable).parent)


def output_tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="session")
def registries() -> dict[str, str]:
    """inventory name -> the registry its rendered manifests pull from ('' on kind)."""
    return {name: TEST_REGISTRY if name in NEEDS_REGISTRY else "" for name in INVENTORIES}


@pytest.fixture(scope="session")
def rendered(ansible: Ansible, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """inventory name -> folder with <role>/<template>.yaml and, per Helm release of the role,
    <role>/helm/<release>.values.yaml and <role>/helm/<release>.release.json (what the role's
    Helm task passes besides the values: chart, version, namespace, flags)."""
    root = tmp_path_factory.mktemp("rendered")
    runs = {
        name: ansible.start(
            "ansible-playbook",
            ["-i", f"inventories/{name}", *registry_args(name), str(RENDER_PLAYBOOK)],
            RENDER_DIR=str(root / name),
        )
        for name in INVENTORIES
    }
    failures = []
    for name, process in runs.items():
        output, _ = process.communicate(timeout=900)
        if process.returncode != 0:
            header = f"--- inventories/{name} (rc={process.returncode}):"
            failures.append(f"{header}\n{output_tail(output)}")
    assert not failures, "rendering failed:\n" + "\n".join(failures)
    return {name: root / name for name in INVENTORIES}


@dataclass(frozen=True)
class Manifest:
    template: str  # roles/<role>/templates/<name>.yaml.j2
    index: int
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind"))

    @property
    def name(self) -> str:
        return str(self.doc["metadata"]["name"])

    @property
    def namespace(self) -> str | None:
        namespace = self.doc["metadata"].get("namespace")
        return None if namespace is None else str(namespace)


@pytest.fixture(scope="session")
def rendered_manifests(rendered: dict[str, Path]) -> dict[str, list[Manifest]]:
    """inventory name -> every rendered manifest document."""
    found: dict[str, list[Manifest]] = {}
    for inventory, folder in rendered.items():
        found[inventory] = [
            Manifest(f"roles/{path.parent.name}/templates/{path.name}.j2", index, doc)
            for path in sorted(folder.glob("*/*.yaml"))
            for index, doc in enumerate(
                (doc for doc in yaml.safe_load_all(path.read_text()) if doc), start=1
            )
        ]
    return found


@pytest.fixture(scope="session")
def rendered_values(rendered: dict[str, Path]) -> dict[str, dict[str, dict[str, Any]]]:
    """inventory name -> '<role>/<release>' -> the values the role's Helm task passes."""
    return {
        inventory: {
            f"{path.parent.parent.name}/{path.name.removesuffix('.values.yaml')}": yaml.safe_load(
                path.read_text()
            )
            for path in sorted(folder.glob("*/helm/*.values.yaml"))
        }
        for inventory, folder in rendered.items()
    }


@dataclass(frozen=True)
class Release:
    """One Helm release as the role's Helm task installs it (tests/render/render_role.yml)."""

    role: str
    name: str
    namespace: str
    chart_ref: str
    chart_repo_url: str
    chart_version: str
    values: dict[str, Any]
    skip_crds: bool
    skip_schema_validation: bool
    disable_hook: bool


@pytest.fixture(scope="session")
def rendered_releases(rendered: dict[str, Path]) -> dict[str, dict[str, Release]]:
    """inventory name -> release name -> what the role's Helm task passes for it."""
    found: dict[str, dict[str, Release]] = {}
    for inventory, folder in rendered.items():
        found[inventory] = {}
        for path in sorted(folder.glob("*/helm/*.release.json")):
            spec = json.loads(path.read_text())
            values = yaml.safe_load(path.with_name(f"{spec['name']}.values.yaml").read_text())
            found[inventory][spec["name"]] = Release(
                role=path.parent.parent.name, values=values or {}, **spec
            )
    return found
