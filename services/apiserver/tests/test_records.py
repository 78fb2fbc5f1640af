"""Upsert one record, read it back, and the stored document's shape."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Service

pytestmark = pytest.mark.anyio


def parse_ts(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_insert_returns_the_stored_record(service: Service) -> None:
    response = await service.client.post("/internal-insert", json={"id": "rec-1", "score": 0.25})
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"id", "score", "created_at", "updated_at"}
    assert body["id"] == "rec-1"
    assert body["score"] == 0.25
    assert body["created_at"] == body["updated_at"]

    stored = service.collection.find_one({"_id": "rec-1"})
    assert stored is not None
    assert set(stored) == {"_id", "score", "created_at", "updated_at"}  # no separate `id`
    assert stored["score"] == 0.25
    # What the API returns is exactly what is stored (millisecond precision, UTC).
    assert parse_ts(body["created_at"]) == stored["created_at"].astimezone(UTC)
    assert stored["created_at"].microsecond % 1000 == 0


async def test_upsert_updates_score_and_keeps_created_at(service: Service) -> None:
    first = (await service.client.post("/internal-insert", json={"id": "k", "score": 0})).json()
    await asyncio.sleep(0.01)
    second = (await service.client.post("/internal-insert", json={"id": "k", "score": 1})).json()
    assert second["score"] == 1.0
    assert second["created_at"] == first["created_at"]
    assert parse_ts(second["updated_at"]) > parse_ts(first["updated_at"])
    assert service.collection.count_documents({}) == 1


@pytest.mark.parametrize("record_id", ["x", "é✓ unicode/with spaces?&", "z" * 256])
async def test_any_id_of_1_to_256_characters_round_trips(service: Service, record_id: str) -> None:
    response = await service.client.post("/internal-insert", json={"id": record_id, "score": 1})
    assert response.status_code == 200
    read = await service.client.get("/internal-read", params={"id": record_id})
    assert read.status_code == 200
    assert [item["id"] for item in read.json()] == [record_id]


async def test_read_by_id_filters(service: Service) -> None:
    for rid in ("a", "b", "c"):
        await service.client.post("/internal-insert", json={"id": rid, "score": 0.5})
    found = await service.client.get("/internal-read", params={"id": "b"})
    assert [item["id"] for item in found.json()] == ["b"]
    assert "link" not in found.headers
    missing = await service.client.get("/internal-read", params={"id": "nope"})
    assert missing.status_code == 200
    assert missing.json() == []
    assert "link" not in missing.headers


async def test_read_empty_collection(service: Service) -> None:
    response = await service.client.get("/internal-read")
    assert response.status_code == 200
    assert response.json() == []
    assert "link" not in response.headers
