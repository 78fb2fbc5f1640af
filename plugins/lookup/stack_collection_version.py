"""Lookup plugin: the version of an Ansible collection as the running Ansible loads it.

The preflight (playbooks/tasks/preflight.yml) needs the kubernetes.core version that the
helm modules will actually run with: the first copy on the collections path (a Galaxy install
in collections/installed, else the copy bundled with the ``ansible`` package), which is what
``import ansible_collections.<namespace>.<name>`` resolves to inside Ansible.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import yaml
from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

DOCUMENTATION = r"""
name: stack_collection_version
author: gateway-api-stack contributors
version_added: 0.2.0
short_description: version of an installed Ansible collection, as this Ansible loads it
description:
  - Finds the collection the way Ansible resolves it (the first match on the collections path)
    and returns the version its MANIFEST.json (or galaxy.yml) declares.
options:
  _terms:
    description: Collection names (namespace.name).
    required: true
"""

EXAMPLES = r"""
- name: Show which kubernetes.core the modules run with
  ansible.builtin.debug:
    msg: "{{ lookup('gateway_api_stack.showcase.stack_collection_version', 'kubernetes.core') }}"
"""

RETURN = r"""
_raw:
  description: One version string per collection name, with the folder it was found in.
  type: list
  elements: dict
"""


def collection_version(name: str) -> dict[str, str]:
    """``{'version': ..., 'path': ...}`` of the collection ``namespace.name``."""
    namespace, _, collection = name.partition(".")
    if not namespace or not collection:
        raise ValueError(f"{name!r} is not namespace.name")
    try:
        module = importlib.import_module(f"ansible_collections.{namespace}.{collection}")
    except ImportError as exc:
        raise ValueError(f"collection {name} is not installed ({exc})") from exc
    folders = [Path(entry) for entry in getattr(module, "__path__", [])]
    for folder in folders:
        manifest = folder / "MANIFEST.json"
        if manifest.is_file():
            info = json.loads(manifest.read_text())["collection_info"]
            return {"version": str(info["version"]), "path": str(folder)}
        galaxy = folder / "galaxy.yml"
        if galaxy.is_file():
            return {
                "version": str(yaml.safe_load(galaxy.read_text())["version"]),
                "path": str(folder),
            }
    raise ValueError(f"collection {name} has no MANIFEST.json or galaxy.yml in {folders}")


class LookupModule(LookupBase):  # type: ignore[misc]
    """``lookup('gateway_api_stack.showcase.stack_collection_version', 'kubernetes.core')``."""

    def run(self, terms: list[Any], variables: Any = None, **kwargs: Any) -> list[dict[str, str]]:
        self.set_options(var_options=variables, direct=kwargs)
        try:
            return [collection_version(str(term)) for term in terms]
        except ValueError as exc:
            raise AnsibleLookupError(f"stack_collection_version: {exc}") from exc
