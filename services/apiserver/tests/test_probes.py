"""/healthz, /readyz and the OpenAPI document."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Service

pytestmark = pytest.mark.anyio


async def test_healthz_and_readyz(service: Service) -> None:
    assert (await service.client.get("/healthz")).json() == {"status": "ok"}
    ready = await service.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok"}


async def test_readiness_creates_the_updated_at_index(service: Service) -> None:
    # The pipeline's incremental export queries by updated_at; readiness makes sure the
    # index exists before the pod takes traffic.
    service.collection.insert_one({"_id": "seed", "score": 0.5})
    assert "updated_at_1" not in service.collection.index_information()
    assert (await service.client.get("/readyz")).status_code == 200
    index = service.collection.index_information()["updated_at_1"]
    assert index["key"] == [("updated_at", 1)]


async def test_openapi_documents_the_contract(service: Service) -> None:
    spec = (await service.client.get("/openapi.json")).json()
    paths = spec["paths"]
    assert set(paths) == {
        "/internal-insert",
        "/internal-insert/batch",
        "/internal-read",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    schemes = spec["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] == {"type": "apiKey", "in": "header", "name": "x-api-key"}
    assert paths["/internal-read"]["get"]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in paths["/healthz"]["get"]
    read = paths["/internal-read"]["get"]
    assert {p["name"] for p in read["parameters"]} == {"id", "limit", "cursor"}
    ok = read["responses"]["200"]
    schema = ok["content"]["application/json"]["schema"]
    assert (schema["type"], schema["items"]) == ("array", {"$ref": "#/components/schemas/Record"})
    assert 'rel="next"' in ok["headers"]["Link"]["description"]
    record = spec["components"]["schemas"]["Record"]
    assert set(record["properties"]) == {"id", "score", "created_at", "updated_at"}
    ready = paths["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]
    assert ready == {"$ref": "#/components/schemas/ErrorBody"}
    for status in ("400", "401", "413", "415", "422", "503", "504"):
        error = read["responses"][status]["content"]["application/json"]["schema"]
        assert error == {"$ref": "#/components/schemas/ErrorBody"}
    record_in = spec["components"]["schemas"]["RecordIn"]
    assert record_in["additionalProperties"] is False
    assert record_in["properties"]["id"]["maxLength"] == 256
    assert record_in["properties"]["score"]["maximum"] == 1.0


async def test_docs_page_is_served(service: Service) -> None:
    response = await service.client.get("/docs")
    assert response.status_code == 200
    assert "swagger" in response.text.lower()
