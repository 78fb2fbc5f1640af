"""Prometheus metrics move with traffic and are labelled by route template."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

if TYPE_CHECKING:
    from conftest import Service

pytestmark = pytest.mark.anyio


async def scrape(service: Service) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await service.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_counters_histogram_and_errors_move(service: Service) -> None:
    before = await scrape(service)
    for n in range(3):
        await service.client.post("/internal-insert", json={"id": f"m{n}", "score": 0.5})
    await service.client.post("/internal-insert", json={"id": "m", "score": 2})
    await service.client.get("/internal-read", params={"id": "m0"})
    await service.client.get("/internal-read", params={"id": "m1"})
    await service.client.get("/nowhere/12345")
    after = await scrape(service)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "apiserver_http_requests_total"
    assert delta(requests, method="POST", route="/internal-insert", status="200") == 3
    assert delta(requests, method="POST", route="/internal-insert", status="422") == 1
    # Query strings and ids do not create new series: the label is the route template.
    assert delta(requests, method="GET", route="/internal-read", status="200") == 2
    assert delta(requests, method="GET", route="unmatched", status="404") == 1
    assert (
        delta(
            "apiserver_http_request_duration_seconds_count", method="POST", route="/internal-insert"
        )
        == 4
    )
    assert delta("apiserver_http_errors_total", route="/internal-insert", status="422") == 1
    assert delta("apiserver_http_errors_total", route="unmatched", status="404") == 1
    assert delta("apiserver_http_errors_total", route="/internal-insert", status="200") == 0
    routes = {dict(labels).get("route") for (name, labels) in after if name == requests}
    assert not any(route and "12345" in route for route in routes)


async def test_refusals_before_routing_count_against_the_route(service: Service) -> None:
    before = await scrape(service)
    service.client.headers.pop("x-api-key")
    await service.client.post("/internal-insert/batch", json={"records": []})
    service.client.headers["x-api-key"] = "test-key-6f1d2c9a8b7e"
    after = await scrape(service)
    key = (
        "apiserver_http_errors_total",
        frozenset({("route", "/internal-insert/batch"), ("status", "401")}),
    )
    assert after.get(key, 0) - before.get(key, 0) == 1
