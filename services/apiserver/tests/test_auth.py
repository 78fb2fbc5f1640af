"""x-api-key guards /internal-*; probes, metrics and docs are open."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Service

pytestmark = pytest.mark.anyio

PROTECTED = [
    ("POST", "/internal-insert", {"id": "a", "score": 0.5}),
    ("POST", "/internal-insert/batch", {"records": [{"id": "a", "score": 0.5}]}),
    ("GET", "/internal-read", None),
    ("GET", "/internal-read?id=a", None),
]


@pytest.mark.parametrize("request_spec", PROTECTED)
@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "missing x-api-key header"),
        ("wrong", "wrong x-api-key"),
        ("test-key-6f1d2c9a8b7f", "wrong x-api-key"),  # same length, last character differs
        ("TEST-KEY-6F1D2C9A8B7E", "wrong x-api-key"),
        ("", "wrong x-api-key"),
    ],
)
async def test_missing_or_wrong_key_is_401(
    service: Service, request_spec: tuple[str, str, object], key: str | None, message: str
) -> None:
    method, path, body = request_spec
    headers = {"x-api-key": key} if key is not None else {}
    client = service.client
    saved = client.headers.pop("x-api-key")
    try:
        response = await client.request(method, path, json=body, headers=headers)
    finally:
        client.headers["x-api-key"] = saved
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "message": message}
    assert service.collection.count_documents({}) == 0


async def test_auth_is_checked_before_the_body(service: Service) -> None:
    response = await service.client.post(
        "/internal-insert",
        content=b"{not json",
        headers={"x-api-key": "wrong", "content-type": "application/json"},
    )
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics", "/docs", "/openapi.json"])
async def test_open_endpoints_need_no_key(service: Service, path: str) -> None:
    service.client.headers.pop("x-api-key")
    response = await service.client.get(path)
    assert response.status_code == 200
