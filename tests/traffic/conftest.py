"""The Gateway the traffic checks run against.

By default the local data plane (:class:`stacktools.dataplane.LocalGateway`: Traefik on a
control plane of its own, real backends on this machine), started once for the module.
With ``STACK_TRAFFIC_KUBECONFIG`` set (molecule/default/verify.yml), a deployed kind cluster
with Istio's Gateway instead: the same tests, through the same listeners.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stacktools.dataplane import LocalGateway
from stacktools.traffic.target import Target, target_from_env


@pytest.fixture(scope="session")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    deployed = target_from_env()
    if deployed is not None:
        yield deployed
        return
    with LocalGateway(Path(tmp_path_factory.mktemp("dataplane"))) as gateway:
        print(f"\ndataplane set-up: {gateway.timings}")
        yield gateway.target
