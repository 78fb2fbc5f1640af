"""The pieces of the dataplane level on their own: Traefik's pin and build, the statistics of
the split test, and why the backends live in a network namespace (EndpointSlices refuse
loopback addresses; an address of the namespace's range is accepted)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from stacktools.builds.traefik import TRAEFIK_VERSION, binary, binary_version
from stacktools.cluster.kubeapi import KubeApi, KubeApiError
from stacktools.dataplane import endpoint_slice
from stacktools.servers.controlplane import ControlPlane
from stacktools.traffic.stats import binomial_interval, binomial_pmf

GO_MOD = Path(__file__).parents[2] / "traefik" / "go.mod"


@pytest.mark.lint
def test_traefik_pin_matches_go_mod() -> None:
    go_mod = GO_MOD.read_text()
    assert re.search(
        rf"^\s*github\.com/traefik/traefik/v3 {re.escape(TRAEFIK_VERSION)}\b", go_mod, re.M
    )
    # Traefik's own replace and exclude lines (its go.mod at that version), repeated.
    for line in (
        "github.com/abbot/go-http-auth => github.com/containous/go-http-auth",
        "github.com/gorilla/mux => github.com/containous/mux",
        "github.com/mailgun/minheap => github.com/containous/minheap",
        "exclude github.com/tencentcloud/tencentcloud-sdk-go v3.0.83+incompatible",
    ):
        assert line in go_mod


@pytest.mark.dataplane
def test_built_traefik_reports_the_pinned_version() -> None:
    assert binary_version(binary()) == TRAEFIK_VERSION


@pytest.mark.dataplane
@pytest.mark.parametrize(("n", "p"), [(2000, 0.1), (1000, 0.1), (2000, 0.5), (300, 0.02)])
def test_binomial_interval_is_the_exact_central_interval(n: int, p: float) -> None:
    low, high = binomial_interval(n, p, 0.999)
    below = sum(binomial_pmf(k, n, p) for k in range(low))
    above = sum(binomial_pmf(k, n, p) for k in range(high + 1, n + 1))
    # Each tail holds at most 0.05 % ...
    assert below <= 0.0005
    assert above <= 0.0005
    # ... and is as large as it can be: one more value would exceed it.
    assert below + binomial_pmf(low, n, p) > 0.0005
    assert above + binomial_pmf(high, n, p) > 0.0005
    assert low <= n * p <= high


@pytest.mark.dataplane
def test_binomial_interval_edges() -> None:
    assert binomial_interval(400, 0.0) == (0, 0)
    assert binomial_interval(400, 1.0) == (400, 400)
    with pytest.raises(ValueError, match="need n >= 1"):
        binomial_interval(0, 0.5)


@pytest.mark.dataplane
def test_endpoint_slices_refuse_loopback_but_take_the_backend_range(
    kube_controlplane: ControlPlane,
) -> None:
    kube = KubeApi(kube_controlplane.server, kube_controlplane.ssl_context())
    namespace = f"slices-{uuid.uuid4().hex[:8]}"
    kube.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    try:
        with pytest.raises(KubeApiError) as refused:
            kube.apply(endpoint_slice(namespace, "svc", "http", "127.0.0.1", 8000))
        assert refused.value.status == 422
        assert "loopback" in refused.value.body
        created = kube.apply(endpoint_slice(namespace, "svc", "http", "198.18.0.2", 8000))
        assert created["endpoints"][0]["addresses"] == ["198.18.0.2"]
    finally:
        kube.delete(f"/api/v1/namespaces/{namespace}")
