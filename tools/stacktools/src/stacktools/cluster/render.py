"""The manifests and Helm values the roles render for an inventory, without a cluster:
``tests/render/render.yml`` run with the real Ansible templating (the same playbook the
repository-level tests render with)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stacktools.paths import repo_root


@dataclass(frozen=True)
class Rendered:
    """One inventory's rendered manifests (``<role>/<name>.yaml``) and Helm values."""

    folder: Path

    def manifests(self, role: str) -> list[dict[str, Any]]:
        return [
            doc
            for path in sorted((self.folder / role).glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text())
            if doc
        ]

    def find(self, role: str, kind: str, name: str) -> dict[str, Any]:
        found = [
            doc
            for doc in self.manifests(role)
            if doc.get("kind") == kind and doc["metadata"]["name"] == name
        ]
        if len(found) != 1:
            msg = f"{len(found)} {kind} named {name} rendered by role {role} in {self.folder}"
            raise LookupError(msg)
        return found[0]

    def values(self, role: str, name: str) -> dict[str, Any]:
        loaded: dict[str, Any] = yaml.safe_load((self.folder / role / "helm" / name).read_text())
        return loaded


BUNDLE = "files.json"


def unpack(folder: Path | str) -> Path:
    """Write out the files tests/render/render.yml collected in ``folder``/files.json (relative
    path -> text) under ``folder``; return the folder."""
    root = Path(folder)
    files: dict[str, str] = json.loads((root / BUNDLE).read_text())
    for name, text in files.items():
        path = (root / name).resolve()
        if not path.is_relative_to(root.resolve()):
            msg = f"{root / BUNDLE}: {name!r} lies outside the render folder"
            raise ValueError(msg)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def ansible_env(**extra: str) -> dict[str, str]:
    """The environment the Makefile gives Ansible (its configuration, through which the FQCN
    lookup plugin resolves)."""
    root = repo_root()
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(root / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        ANSIBLE_LOCAL_TEMP=str(root / ".cache" / "ansible-tmp"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


def render_command(inventory: str, extra_vars: dict[str, Any] | None = None) -> list[str]:
    root = repo_root()
    argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", f"inventories/{inventory}"]
    if extra_vars:
        argv += ["-e", json.dumps(extra_vars)]
    return [*argv, str(root / "tests" / "render" / "render.yml")]


def render(
    inventory: str,
    folder: Path,
    roles: tuple[str, ...] = (),
    extra_vars: dict[str, Any] | None = None,
    timeout: float = 900,
) -> Rendered:
    """Render the manifests of ``roles`` (default: every role) for ``inventory`` into
    ``folder``; every role's defaults load and its argument specs are checked either way."""
    extra = dict(extra_vars or {})
    if roles:
        extra["render_roles"] = list(roles)
    result = subprocess.run(
        render_command(inventory, extra),
        cwd=repo_root(),
        env=ansible_env(RENDER_DIR=str(folder)),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
        msg = f"rendering inventories/{inventory} failed (rc={result.returncode}):\n{tail}"
        raise RuntimeError(msg)
    return Rendered(unpack(folder))
