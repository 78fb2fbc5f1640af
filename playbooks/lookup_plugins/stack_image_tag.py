"""Lookup plugin: the content-derived tag of a service image.

The one place that decides how an image tag is derived from the source, used by
playbooks/kind.yml (which builds and loads the image) and by the apiserver and dagster
role defaults (which deploy it), so a new build always rolls out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: stack_image_tag
short_description: content-derived image tag of a service under services/
description:
  - Hashes every file of C(services/<name>) (tests and caches excluded) together with the
    workspace's C(uv.lock) and every C(pyproject.toml) of the workspace (the root's and its
    members'), which the Dockerfiles copy and install from.
  - Returns the first 12 hex digits of the SHA-256, usable as a container image tag.
options:
  _terms:
    description: Service names (directories under C(services/)).
    required: true
  root:
    description: Repository root; defaults to two levels above this plugin's directory.
    type: str
"""

EXAMPLES = r"""
- name: Show the apiserver image tag
  ansible.builtin.debug:
    msg: "{{ lookup('stack_image_tag', 'apiserver') }}"
"""

RETURN = r"""
_raw:
  description: One tag (12 lowercase hex characters) per service name.
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


def _services(root: Path) -> list[str]:
    services = root / "services"
    return [p.name for p in services.iterdir() if p.is_dir()] if services.is_dir() else []


class LookupModule(LookupBase):  # type: ignore[misc]
    """``lookup('stack_image_tag', 'apiserver')``."""

    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[str]:
        self.set_options(var_options=variables, direct=kwargs)
        root_option = self.get_option("root")
        root = Path(root_option) if root_option else Path(__file__).resolve().parents[2]
        try:
            return [source_tag(root, str(term)) for term in terms]
        except ValueError as exc:
            raise AnsibleLookupError(f"stack_image_tag: {exc}") from exc
