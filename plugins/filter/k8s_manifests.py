"""Filter plugin: Kubernetes manifests (multi-document YAML) as plain data, fast.

The roles apply upstream CRD bundles of several MB (the prometheus-operator's ten CRDs are
4.5 MB). ``ansible.builtin.from_yaml_all`` parses them with Ansible's pure-Python constructor and
tags every value with its origin; kubernetes.core's k8s action then deep-copies those tagged
values for each call. This filter parses with PyYAML's libyaml loader when present and returns
untagged lists and dicts: the same data in a fraction of the time (bench/site.py).

It also reads the documents as the API server and Helm do (YAML 1.2) in the one place PyYAML's
YAML 1.1 differs for these files: a bare ``=`` (the AlertmanagerConfig CRD's ``matchType`` enum)
is the string ``"="``, where PyYAML's safe loader refuses the ``tag:yaml.org,2002:value`` it
resolves it to.
"""

from __future__ import annotations

from typing import Any

import yaml
from ansible.errors import AnsibleFilterError

DOCUMENTATION = r"""
name: k8s_manifests
author: gateway-api-stack contributors
version_added: 0.2.0
short_description: parse multi-document Kubernetes YAML into a plain list of objects
description:
  - Parses one string, or a list of strings, each holding one or more YAML documents, and returns
    every non-empty document in order as plain (untagged) data.
  - Uses PyYAML's libyaml-based safe loader when available. A bare C(=) scalar is read as the
    string C("=") (YAML 1.2, as the API server reads it).
  - Fails naming the document's position when a document is not valid YAML or not a mapping.
options:
  _input:
    description: YAML text, or a list of YAML texts (for example one per file).
    type: raw
    required: true
"""

EXAMPLES = r"""
- name: Read every CRD of a folder
  ansible.builtin.set_fact:
    crds: >-
      {{ query('ansible.builtin.file', *query('ansible.builtin.fileglob', crds_dir ~ '/*.yaml'))
         | gateway_api_stack.showcase.k8s_manifests }}
"""

RETURN = r"""
_value:
  description: The non-empty documents, each a mapping, in the order of the input.
  type: list
  elements: dict
"""

_BASE: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BASE):  # type: ignore[valid-type,misc]
    """The safe loader, with YAML 1.1's ``=`` value key read as a plain string."""


def _value_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))  # type: ignore[arg-type]


_Loader.add_constructor("tag:yaml.org,2002:value", _value_as_string)


def k8s_manifests(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, str):
        texts: list[Any] = [data]
    elif isinstance(data, (list, tuple)):
        texts = list(data)
    else:
        msg = f"k8s_manifests expects YAML text or a list of YAML texts, got {type(data).__name__}"
        raise AnsibleFilterError(msg)
    manifests: list[dict[str, Any]] = []
    for number, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            msg = f"k8s_manifests: input {number} is {type(text).__name__}, not YAML text"
            raise AnsibleFilterError(msg)
        try:
            documents = list(yaml.load_all(str(text), Loader=_Loader))  # a SafeLoader subclass
        except yaml.YAMLError as exc:
            msg = f"k8s_manifests: input {number} is not valid YAML: {exc}"
            raise AnsibleFilterError(msg) from exc
        for index, document in enumerate(documents, start=1):
            if document is None:
                continue
            if not isinstance(document, dict):
                msg = (
                    f"k8s_manifests: document {index} of input {number} is a "
                    f"{type(document).__name__}, not a Kubernetes object (a mapping)"
                )
                raise AnsibleFilterError(msg)
            manifests.append(document)
    return manifests


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"k8s_manifests": k8s_manifests}
