"""Ansible's linear strategy run by Mitogen for Ansible (ansible.cfg: strategy = mitogen_linear).

With it a play keeps one Python interpreter per host and runs every module in it, instead of
starting an interpreter, unpacking the module and importing the Kubernetes client for each of
the roughly 25 `kubernetes.core` module runs of site.yml: a no-op rerun of site.yml takes about
17 s instead of 28 s (docs/benchmarks.md). Tasks, results, check mode, `--diff` and `no_log`
are Ansible's own; only how modules are started changes.

This file only finds the strategy in the installed `mitogen` package (pinned in pyproject.toml's
deploy group), so that ansible.cfg names a folder of this repository rather than a path into a
virtualenv. It lives outside plugins/, so it is not part of the Galaxy collection.

Without Mitogen: `ANSIBLE_STRATEGY=linear ansible-playbook ...` (the same plays, slower).
ansible-core 2.19 prints a deprecation warning for any strategy plugin outside ansible.builtin;
see docs/benchmarks.md for what that means for this choice.
"""

from __future__ import annotations

from ansible.errors import AnsibleError

try:
    from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule
except ImportError as error:
    raise AnsibleError(
        "ansible.cfg runs plays with Mitogen for Ansible (strategy = mitogen_linear), but the "
        f"Python running ansible-playbook cannot import it ({error}). Install the pinned "
        "version (make setup, or: pip install mitogen==0.3.54), or run without it: "
        "ANSIBLE_STRATEGY=linear ansible-playbook ..."
    ) from error

__all__ = ["StrategyModule"]
