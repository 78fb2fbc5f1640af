"""POST /internal-insert/batch: per-record results, inserted vs updated, limits."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Service

pytestmark = pytest.mark.anyio


async def test_results_say_inserted_or_updated_in_request_order(service: Service) -> None:
    await service.client.post("/internal-insert", json={"id": "old", "score": 0.1})
    records = [
        {"id": "new-1", "score": 0.2},
        {"id": "old", "score": 0.9},
        {"id": "new-2", "score": 1},
    ]
    response = await service.client.post("/internal-insert/batch", json={"records": records})
    assert response.status_code == 200
    assert response.json() == {
        "inserted": 2,
        "updated": 1,
        "failed": 0,
        "results": [
            {"id": "new-1", "status": "inserted", "error": None},
            {"id": "old", "status": "updated", "error": None},
            {"id": "new-2", "status": "inserted", "error": None},
        ],
    }
    stored = {doc["_id"]: doc for doc in service.collection.find()}
    assert {rid: doc["score"] for rid, doc in stored.items()} == {
        "new-1": 0.2,
        "old": 0.9,
        "new-2": 1.0,
    }
    # One timestamp per batch; an updated record keeps its creation time.
    assert stored["new-1"]["updated_at"] == stored["old"]["updated_at"]
    assert stored["old"]["created_at"] < stored["old"]["updated_at"]


async def test_a_full_batch_of_1000_twice(service: Service) -> None:
    """1000 inserts, then the same 1000 as updates (FerretDB 1.24.2 hangs on one update
    command in which 100 or more statements modify documents; the repository splits it)."""
    records = [{"id": f"b{n:04d}", "score": n / 1000} for n in range(1000)]
    first = await service.client.post("/internal-insert/batch", json={"records": records})
    assert first.status_code == 200
    assert (first.json()["inserted"], first.json()["updated"]) == (1000, 0)
    second = await service.client.post("/internal-insert/batch", json={"records": records})
    assert second.status_code == 200
    assert (second.json()["inserted"], second.json()["updated"]) == (0, 1000)
    assert [r["id"] for r in second.json()["results"]] == [r["id"] for r in records]
    assert service.collection.count_documents({}) == 1000


async def test_concurrent_batches_over_the_same_new_ids(service: Service) -> None:
    """Upsert races inside bulk writes (duplicate key errors) are retried, not lost.

    10 records x 8 concurrent commands stay well under the 100 documents FerretDB 1.24.2 can hold
    matched at once across in-flight updates (it deadlocks at 100: each matched statement keeps
    one of its 100 SQLite connections until its command ends)."""
    records = [{"id": f"race-{n:02d}", "score": 0.5} for n in range(10)]

    async def post() -> dict[str, object]:
        response = await service.client.post("/internal-insert/batch", json={"records": records})
        assert response.status_code == 200
        body: dict[str, object] = response.json()
        return body

    bodies = await asyncio.gather(*(post() for _ in range(8)))
    assert all(body["failed"] == 0 for body in bodies), bodies
    assert service.collection.count_documents({}) == 10
