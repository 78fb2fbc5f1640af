"""Fixtures of the repository-level tests: running Ansible the way the Makefile does, the
manifests of every role rendered for every inventory (tests/render/render.yml), and the Galaxy
collection installed into a user's project outside the repository."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from stacktools.builds import kubernetes_core
from stacktools.builds.collection import Collection, collection
from stacktools.cluster.render import unpack

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
def render_secret() -> str:
    """The value of every generated secret in this session's renders (random per session), so
    that two renders of the same roles are comparable byte for byte."""
    return secrets.token_urlsafe(24)


Starter = Callable[..., subprocess.Popen[str]]


def render_inventories(
    start: Starter, root: Path, inventories: Sequence[str] = INVENTORIES, **env: str
) -> dict[str, Path]:
    """tests/render/render.yml for the inventories (all by default), in parallel, through
    ``start`` (the project's Ansible or a user's project); inventory -> the folder it rendered."""
    runs = {
        name: start(
            "ansible-playbook",
            ["-i", str(REPO / "inventories" / name), *registry_args(name), str(RENDER_PLAYBOOK)],
            RENDER_DIR=str(root / name),
            **env,
        )
        for name in inventories
    }
    failures = []
    try:
        for name, process in runs.items():
            output, _ = process.communicate(timeout=900)
            if process.returncode != 0:
                header = f"--- inventories/{name} (rc={process.returncode}):"
                failures.append(f"{header}\n{output_tail(output)}")
    finally:  # a timeout (or pytest-timeout) leaves no render running behind
        for process in runs.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    assert not failures, "rendering failed:\n" + "\n".join(failures)
    return {name: unpack(root / name) for name in inventories}


@pytest.fixture(scope="session")
def rendered(
    ansible: Ansible, render_secret: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """inventory name -> folder with <role>/<template>.yaml and, per Helm release of the role,
    <role>/helm/<release>.values.yaml and <role>/helm/<release>.release.json (what the role's
    Helm task passes besides the values: chart, version, namespace, flags)."""
    root = tmp_path_factory.mktemp("rendered")
    return render_inventories(ansible.start, root, RENDER_SECRET=render_secret)


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
class UserProject:
    """A user's Ansible project outside the repository, with the collection installed from the
    tarball the set-up step built. Its ansible.cfg knows no roles path and no plugin folder of
    the repository: roles, playbooks and lookups resolve from the installed collection only (and
    kubernetes.core from the set-up step's 6.6.0, the rest from the Python environment). No
    ANSIBLE_* variable of the caller's environment reaches it."""

    root: Path
    collections: Path
    built: Collection
    bin_dir: Path

    @property
    def installed(self) -> Path:
        return self.collections / "ansible_collections" / self.built.namespace / self.built.name

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("ANSIBLE_", "K8S_AUTH_", "MOLECULE_"))
        }
        env.update(
            ANSIBLE_CONFIG=str(self.root / "ansible.cfg"),
            ANSIBLE_HOME=str(self.root / ".ansible"),
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
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
            cwd=self.root,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, tool: str, args: Sequence[str], **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(tool, *args),
            cwd=self.root,
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def user_project(root: Path, built: Collection, bin_dir: Path) -> UserProject:
    """Install ``built`` (offline: its dependency must already be satisfied) into a new user
    project at ``root``, run by the Ansible in ``bin_dir``."""
    root.mkdir(parents=True)
    collections = root / "collections"
    # kubernetes.core 6.6.0 (the set-up step's, from a newer `ansible` package: the collection
    # depends on >= 6.4.0, which works with Helm 4), then the other collections of the pinned
    # `ansible` package (whose kubernetes.core 6.2.0 does not meet that dependency).
    core = kubernetes_core.collections_path()
    bundled = sysconfig.get_paths()["purelib"]
    (root / "ansible.cfg").write_text(
        f"[defaults]\ncollections_path = {collections}:{core}:{bundled}\n"
        "retry_files_enabled = false\n"
    )
    project = UserProject(root, collections, built, bin_dir)
    result = project.run(
        "ansible-galaxy", "collection", "install", "--offline", str(built.tarball),
        "-p", str(collections),
    )  # fmt: skip
    assert result.returncode == 0, f"installing {built}:\n{result.stdout}{result.stderr}"
    return project


@pytest.fixture(scope="session")
def user(tmp_path_factory: pytest.TempPathFactory) -> UserProject:
    """The collection (built by `make prepare`) installed into a user's project."""
    built = collection()  # BuildMissingError naming `make prepare` when it is not built
    folder = tmp_path_factory.mktemp("user") / "project"
    return user_project(folder, built, Path(sys.executable).parent)


@pytest.fixture(scope="session")
def make_user_project() -> Callable[[Path, Collection, Path], UserProject]:
    """``user_project`` for tests that need a project of their own (another ansible-core)."""
    return user_project


@pytest.fixture(scope="session")
def render_installed(render_secret: str) -> Callable[..., dict[str, Path]]:
    """Renders inventories (all by default) through a user project's installed collection
    (roles by FQCN, templates of the installed copy), with this session's secret."""

    def render(
        project: UserProject, root: Path, inventories: Sequence[str] = INVENTORIES
    ) -> dict[str, Path]:
        return render_inventories(
            project.start,
            root,
            inventories,
            RENDER_SECRET=render_secret,
            RENDER_COLLECTION=project.built.fqcn,
            RENDER_ROLES_DIR=str(project.installed / "roles"),
        )

    return render


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
