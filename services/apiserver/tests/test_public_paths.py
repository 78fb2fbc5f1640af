"""What the Gateway publishes: the OpenAPI document lists the public paths when the Gateway's
x-gateway-rewrites header says how it rewrites them, and no answer redirects (a redirect
would name an internal path, which the Gateway does not route)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from apiserver.openapi import HEADER, gateway_path, parse_rewrites

if TYPE_CHECKING:
    from conftest import Service

pytestmark = pytest.mark.anyio

REWRITES = (
    "/external-insert/batch=/internal-insert/batch,"
    "/external-insert=/internal-insert,/external-read=/internal-read"
)


async def test_openapi_through_the_gateway_lists_the_public_paths(service: Service) -> None:
    direct = (await service.client.get("/openapi.json")).json()
    routed = (await service.client.get("/openapi.json", headers={HEADER: REWRITES})).json()
    assert set(routed["paths"]) == {"/external-insert", "/external-insert/batch", "/external-read"}
    assert routed["paths"]["/external-read"] == direct["paths"]["/internal-read"]
    assert routed["paths"]["/external-insert/batch"] == direct["paths"]["/internal-insert/batch"]
    assert routed["components"] == direct["components"]
    assert "/internal-read" in direct["paths"]  # called directly: the paths the service serves


@pytest.mark.parametrize(
    "value",
    ["/external-read", "external-read=/internal-read", "/a=/b/../c", "/a=/b,", "/a=/b c"],
)
async def test_a_malformed_rewrites_header_is_400(service: Service, value: str) -> None:
    response = await service.client.get("/openapi.json", headers={HEADER: value})
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert HEADER in response.json()["message"]


def test_the_gateway_picks_the_longest_prefix() -> None:
    rewrites = parse_rewrites("/pub=/internal-x,/pub/b=/internal-y")
    assert gateway_path("/internal-x", rewrites) == "/pub"
    assert gateway_path("/internal-y", rewrites) == "/pub/b"
    # /pub/b would be taken by the longer rule, so nothing public reaches /internal-x/b.
    assert gateway_path("/internal-x/b", rewrites) is None
    assert gateway_path("/internal-xy", rewrites) is None  # prefixes match whole segments
    assert gateway_path("/healthz", rewrites) is None


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/internal-read/", None),
        ("GET", "/internal-read//", None),
        ("POST", "/internal-insert/", {"id": "slash", "score": 0.5}),
        ("POST", "/internal-insert/batch/", {"records": [{"id": "slash-b", "score": 0.5}]}),
        ("GET", "/healthz/", None),
        ("GET", "/docs/", None),
    ],
)
async def test_a_trailing_slash_is_served_not_redirected(
    service: Service, method: str, path: str, body: object
) -> None:
    response = await service.client.request(method, path, json=body)
    assert response.status_code == 200, response.text
    assert "location" not in response.headers


async def test_no_route_answers_a_redirect(service: Service) -> None:
    for path in ("/internal-read", "/docs", "/redoc", "/openapi.json", "/nowhere/", "/internal-"):
        response = await service.client.get(path)
        assert not response.is_redirect, f"{path} answered {response.status_code}"
