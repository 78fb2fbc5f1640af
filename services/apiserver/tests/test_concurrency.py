"""100 concurrent upserts of one id leave exactly one document."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Service

pytestmark = pytest.mark.anyio


async def test_100_concurrent_upserts_of_one_id(service: Service) -> None:
    scores = [n / 100 for n in range(100)]
    responses = await asyncio.gather(
        *(service.client.post("/internal-insert", json={"id": "hot", "score": s}) for s in scores)
    )
    assert [r.status_code for r in responses] == [200] * 100
    assert service.collection.count_documents({}) == 1
    stored = service.collection.find_one({"_id": "hot"})
    assert stored is not None
    assert stored["score"] in scores
    created = {r.json()["created_at"] for r in responses}
    assert len(created) == 1, "every answer must report the one document's creation time"
