"""What the traffic checks run against: one Gateway, its listeners, its backends' access logs,
and a way to run the gateway role again (to change the canary weight, to restore a
ReferenceGrant). Two kinds: the local Traefik data plane (:mod:`stacktools.dataplane`) and a
kind cluster with Istio, described by environment variables (:func:`target_from_env`;
molecule/default/verify.yml sets them).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacktools.cluster.kubeapi import KubeApi
from stacktools.paths import repo_root
from stacktools.traffic.client import request
from stacktools.traffic.logs import AccessLog, PodAccessLog

Playbook = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]
# A read through the apiserver listener (rewritten to /internal-read).
READ = "/external-read?limit=1"


@dataclass
class Target:
    description: str
    apiserver_url: str
    dagster_url: str
    grafana_url: str
    # A path of the grafana listener and a text its answer must contain (which backend).
    grafana_check: tuple[str, str]
    # MongoDB through the Gateway's TCP listener, as a user that may write.
    mongodb_uri: str
    api_key: str
    kube: KubeApi
    stable: AccessLog
    canary: AccessLog
    canary_weight: int
    ab_header: tuple[str, str]
    playbook: Playbook
    gateway_namespace: str = "gateway"
    gateway_name: str = "stack-gateway"
    apiserver_namespace: str = "apiserver"

    @property
    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}

    def run_gateway_role(self, **extra_vars: Any) -> subprocess.CompletedProcess[str]:
        """``site.yml --tags gateway`` with ``extra_vars`` over the deployed inventory."""
        return self.playbook(["--tags", "gateway", "--extra-vars", json.dumps(extra_vars)])

    def served(self) -> dict[str, int]:
        """The status of one request through each HTTP listener (0: no answer)."""
        checks = {
            "apiserver": (self.apiserver_url, READ, self.headers),
            "grafana": (self.grafana_url, self.grafana_check[0], {}),
            "dagster": (self.dagster_url, "/server_info", {}),
        }
        statuses = {}
        for listener, (url, path, headers) in checks.items():
            try:
                statuses[listener] = request(url, "GET", path, headers=headers, timeout=10).status
            except OSError:
                statuses[listener] = 0
        return statuses

    def await_served(self, timeout: float = 60.0) -> dict[str, int]:
        """Wait until every HTTP listener carries a request to its backend (200).

        A route's status can say Accepted and ResolvedRefs before the data plane serves it:
        Traefik writes the status, then loads the new configuration (seen: requests answered
        500, "missing ReferenceGrant", for a moment after the role's waits had passed)."""
        deadline = time.monotonic() + timeout
        while True:
            statuses = self.served()
            if set(statuses.values()) == {200}:
                return statuses
            if time.monotonic() > deadline:
                msg = f"the Gateway's listeners did not serve within {timeout:.0f}s: {statuses}"
                raise TimeoutError(msg)
            time.sleep(0.5)


def ansible_playbook(
    args_before: Sequence[str], env: Mapping[str, str], timeout: float = 900.0
) -> Playbook:
    """A runner of ``ansible-playbook playbooks/site.yml <args_before> <args>`` in the repo."""
    root = repo_root()
    executable = Path(sys.executable).parent / "ansible-playbook"

    def run(args: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(executable), "playbooks/site.yml", *args_before, *args],
            cwd=root,
            env={
                **os.environ,
                "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
                "ANSIBLE_NOCOLOR": "1",
                "ANSIBLE_FORCE_COLOR": "0",
                **env,
            },
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


# kind (molecule/default/verify.yml) ------------------------------------------------------
ENV_PREFIX = "STACK_TRAFFIC_"


def target_from_env(env: Mapping[str, str] | None = None) -> Target | None:
    """The kind cluster described by ``STACK_TRAFFIC_*`` variables, or None when unset.

    ``STACK_TRAFFIC_KUBECONFIG`` (and ``_CONTEXT``), ``_APISERVER_URL``, ``_DAGSTER_URL``,
    ``_GRAFANA_URL``, ``_MONGODB_URI`` (a user that may write), ``_CANARY_WEIGHT``,
    ``_AB_HEADER`` (``name: value``), ``_PLAYBOOK_ARGS`` (JSON list: inventory and extra-vars
    of the deployment); the API key in ``APISERVER_API_KEY``.
    """
    env = os.environ if env is None else env
    kubeconfig = env.get(ENV_PREFIX + "KUBECONFIG")
    if not kubeconfig:
        return None
    missing = [
        name
        for name in (
            "APISERVER_URL",
            "DAGSTER_URL",
            "GRAFANA_URL",
            "MONGODB_URI",
            "CANARY_WEIGHT",
            "PLAYBOOK_ARGS",
        )
        if not env.get(ENV_PREFIX + name)
    ]
    if not env.get("APISERVER_API_KEY"):
        missing.append("APISERVER_API_KEY")
    if missing:
        msg = f"{ENV_PREFIX}KUBECONFIG is set, so these must be too: {', '.join(missing)}"
        raise ValueError(msg)
    kube = KubeApi.from_kubeconfig(Path(kubeconfig), env.get(ENV_PREFIX + "CONTEXT") or None)
    header_name, _, header_value = env.get(ENV_PREFIX + "AB_HEADER", "").partition(":")
    selector = "app.kubernetes.io/name=apiserver,track={}"
    return Target(
        description=f"Istio's Gateway on the cluster of {kubeconfig}",
        apiserver_url=env[ENV_PREFIX + "APISERVER_URL"],
        dagster_url=env[ENV_PREFIX + "DAGSTER_URL"],
        grafana_url=env[ENV_PREFIX + "GRAFANA_URL"],
        grafana_check=("/api/health", '"database"'),
        mongodb_uri=env[ENV_PREFIX + "MONGODB_URI"],
        api_key=env["APISERVER_API_KEY"],
        kube=kube,
        stable=PodAccessLog("stable", kube, "apiserver", selector.format("stable")),
        canary=PodAccessLog("canary", kube, "apiserver", selector.format("canary")),
        canary_weight=int(env[ENV_PREFIX + "CANARY_WEIGHT"]),
        ab_header=(header_name.strip(), header_value.strip()),
        playbook=ansible_playbook(json.loads(env[ENV_PREFIX + "PLAYBOOK_ARGS"]), {}),
    )
