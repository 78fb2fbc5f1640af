"""Keyset pagination: pages in id order, no record twice, none that existed at start lost,
even while other clients insert between page fetches."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Service

pytestmark = pytest.mark.anyio


async def seed(service: Service, ids: list[str]) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        response = await service.client.post(
            "/internal-insert/batch",
            json={"records": [{"id": rid, "score": 0.5} for rid in chunk]},
        )
        assert response.status_code == 200
        assert response.json()["failed"] == 0


async def test_pages_cover_the_collection_exactly_once(service: Service) -> None:
    ids = [f"id-{n:04d}" for n in range(250)]
    await seed(service, ids)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 100}
        if cursor:
            params["cursor"] = cursor
        body = (await service.client.get("/internal-read", params=params)).json()
        pages += 1
        assert len(body["items"]) <= 100
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == sorted(ids)


async def test_default_limit_is_100(service: Service) -> None:
    await seed(service, [f"r{n:03d}" for n in range(120)])
    body = (await service.client.get("/internal-read")).json()
    assert len(body["items"]) == 100
    assert body["next_cursor"] is not None


async def test_limit_1000_is_allowed(service: Service) -> None:
    await seed(service, [f"r{n:04d}" for n in range(1001)])
    body = (await service.client.get("/internal-read", params={"limit": 1000})).json()
    assert len(body["items"]) == 1000
    rest = await service.client.get("/internal-read", params={"cursor": body["next_cursor"]})
    assert [item["id"] for item in rest.json()["items"]] == ["r1000"]


async def test_concurrent_inserts_between_pages(service: Service) -> None:
    rng = random.Random(7)
    initial = [f"{rng.randrange(10**6):06d}-start" for _ in range(300)]
    initial = sorted(set(initial))
    await seed(service, initial)

    async def writer(stop: asyncio.Event) -> int:
        written = 0
        while not stop.is_set():
            # New ids land before and after the cursor; existing ids are updated in place.
            rid = f"{rng.randrange(10**6):06d}-new" if written % 3 else rng.choice(initial)
            response = await service.client.post(
                "/internal-insert", json={"id": rid, "score": rng.random()}
            )
            assert response.status_code == 200
            written += 1
            await asyncio.sleep(0)
        return written

    stop = asyncio.Event()
    writers = [asyncio.create_task(writer(stop)) for _ in range(4)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 37}
        if cursor:
            params["cursor"] = cursor
        response = await service.client.get("/internal-read", params=params)
        assert response.status_code == 200
        body = response.json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        await asyncio.sleep(0.01)  # let the writers run between pages
    stop.set()
    written = sum(await asyncio.gather(*writers))
    assert written > 0
    assert len(seen) == len(set(seen)), "a record appeared on two pages"
    assert seen == sorted(seen)
    assert set(initial) <= set(seen), "a record that existed at the start was skipped"
