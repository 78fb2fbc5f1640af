"""Lookup plugin: the tag of a service image, the one place that decides it.

Used by playbooks/kind.yml (which builds and loads the images) and by the apiserver and dagster
role defaults (which deploy them), in two situations:

* in a checkout of the repository (``services/`` beside the plugin's collection root): a tag
  derived from the image's inputs, so that a new build always rolls out;
* in the installed Galaxy collection (``MANIFEST.json`` instead of ``services/``): the
  collection's version, the tag ``make release`` gives the images it builds with that version.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: stack_image_tag
author: gateway-api-stack contributors
version_added: 0.1.0
short_description: the image tag of a service of the stack
description:
  - In a checkout of the repository, hashes every file of C(services/<name>) (tests and caches
    excluded) together with the workspace's C(uv.lock) and every C(pyproject.toml) of the
    workspace (the root's and its members'), which the Dockerfiles copy and install from, and
    returns the first 12 hex digits of the SHA-256.
  - In the installed collection (no C(services/), a C(MANIFEST.json)), returns the collection's
    version, the tag of the images released with it (C(make release)).
options:
  _terms:
    description: Service names (directories under C(services/)).
    required: true
  root:
    description: >-
      Repository (or installed collection) root; defaults to two levels above this plugin's
      directory.
    type: str
"""

EXAMPLES = r"""
- name: Show the apiserver image tag
  ansible.builtin.debug:
    msg: "{{ lookup('gateway_api_stack.showcase.stack_image_tag', 'apiserver') }}"
"""

RETURN = r"""
_raw:
  description: >-
    One tag per service name: 12 lowercase hex characters in a checkout, the collection's
    version in an installed collection.
  type: list
  elements: str
"""

# Directories that never end up in an image (tests, caches) and change without the image's
# content changing.
SKIPPED_DIRS = frozenset(
    {
        "tests",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".venv",
        ".cache",
        "node_modules",
    }
)
# Files outside services/<name> that the Dockerfiles copy (the uv workspace manifests and lock).
SHARED_GLOBS = ("uv.lock", "pyproject.toml", "tools/*/pyproject.toml", "services/*/pyproject.toml")
TAG_LENGTH = 12
# The images a release builds and tags with the version (make release); an installed
# collection knows only these.
RELEASED_SERVICES = ("apiserver", "pipeline")
# What a container image tag may hold (the OCI distribution spec's tag grammar).
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def _included(path: Path, base: Path) -> bool:
    parts = path.relative_to(base).parts
    return (
        path.is_file()
        and not any(part in SKIPPED_DIRS or part.endswith(".egg-info") for part in parts)
        and path.suffix != ".pyc"
    )


def source_tag(root: Path, service: str) -> str:
    """The tag of ``services/<service>`` under ``root``; raises ValueError if it is missing."""
    service_dir = root / "services" / service
    if not service_dir.is_dir():
        msg = f"no service directory {service_dir} (expected one of {sorted(_services(root))})"
        raise ValueError(msg)
    files = sorted(p for p in service_dir.rglob("*") if _included(p, service_dir))
    shared = {path for pattern in SHARED_GLOBS for path in root.glob(pattern) if path.is_file()}
    files += sorted(shared - set(files))
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:TAG_LENGTH]


def release_tag(root: Path, service: str) -> str:
    """The tag of a released image: the version in ``root/MANIFEST.json`` (an installed
    collection); raises ValueError for a service no release builds or a version no tag can hold."""
    if service not in RELEASED_SERVICES:
        msg = f"no released image {service!r} (a release builds {list(RELEASED_SERVICES)})"
        raise ValueError(msg)
    version = str(json.loads((root / "MANIFEST.json").read_text())["collection_info"]["version"])
    if not IMAGE_TAG.match(version):
        msg = f"the collection version {version!r} is not a valid image tag"
        raise ValueError(msg)
    return version


def image_tag(root: Path, service: str) -> str:
    """The tag for ``service``: content-derived in a checkout, the version in a collection."""
    if (root / "services").is_dir():
        return source_tag(root, service)
    if (root / "MANIFEST.json").is_file():
        return release_tag(root, service)
    msg = (
        f"{root} is neither a checkout of the repository (no services/) nor an installed "
        "collection (no MANIFEST.json)"
    )
    raise ValueError(msg)


def _services(root: Path) -> list[str]:
    services = root / "services"
    return [p.name for p in services.iterdir() if p.is_dir()] if services.is_dir() else []


class LookupModule(LookupBase):  # type: ignore[misc]
    """``lookup('gateway_api_stack.showcase.stack_image_tag', 'apiserver')``."""

    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[str]:
        self.set_options(var_options=variables, direct=kwargs)
        root_option = self.get_option("root")
        root = Path(root_option) if root_option else Path(__file__).resolve().parents[2]
        try:
            return [image_tag(root, str(term)) for term in terms]
        except ValueError as exc:
            raise AnsibleLookupError(f"stack_image_tag: {exc}") from exc
