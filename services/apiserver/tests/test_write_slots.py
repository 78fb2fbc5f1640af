"""The default settings are safe on every server the README names: FerretDB 1.24 keeps a
backend connection for each in-flight statement that matched a document until its command
ends and needs one more to write, so with 100 (SQLite) or 50 (PostgreSQL) such statements
in flight it waits forever. The service keeps its write statements in flight under 48."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from pymongo import MongoClient

from apiserver.settings import Settings
from apiserver.slots import Slots

if TYPE_CHECKING:
    from collections.abc import Callable

    from stacktools.servers.ferretdb import FerretDB

pytestmark = pytest.mark.anyio

SINGLE = 150  # concurrent upserts of one existing id: each matches
BATCHES = 4  # concurrent batches updating 64 existing records each (2 update commands)


@pytest.fixture(params=["sqlite", "postgresql"])
def ferretdb(request: pytest.FixtureRequest) -> FerretDB:
    fixture = "ferretdb_server" if request.param == "sqlite" else "ferretdb_pg_server"
    server: FerretDB = request.getfixturevalue(fixture)
    return server


async def test_defaults_survive_matched_writes_beyond_ferretdbs_connections(
    ferretdb: FerretDB, settings_for: Callable[..., Settings], running_service: Callable[..., Any]
) -> None:
    defaults = Settings(api_key="k" * 16)
    # The write settings are the defaults; the deadline is the longest allowed, so that on a
    # machine busy with other work a write that is slow, not stuck, still answers 200 (a
    # deadlocked one never answers: the wait below, or the deadline's 503, tells).
    settings = settings_for(
        ferretdb.uri,
        mongodb_max_pool_size=defaults.mongodb_max_pool_size,
        mongodb_write_chunk=defaults.mongodb_write_chunk,
        mongodb_max_write_statements=defaults.mongodb_max_write_statements,
        mongodb_timeout_ms=120_000,
    )
    assert defaults.mongodb_max_write_statements < SINGLE
    mongo: MongoClient[dict[str, Any]] = MongoClient(ferretdb.uri)
    try:
        async for service in running_service(settings, mongo):
            client = service.client
            batch = [{"id": f"b{n:03d}", "score": 0.5} for n in range(64)]
            seeded = await client.post("/internal-insert/batch", json={"records": batch})
            assert seeded.status_code == 200
            assert (
                await client.post("/internal-insert", json={"id": "hot", "score": 0})
            ).is_success
            calls = [
                client.post("/internal-insert", json={"id": "hot", "score": n / SINGLE})
                for n in range(SINGLE)
            ] + [
                client.post(
                    "/internal-insert/batch",
                    json={"records": [{**item, "score": k / 10} for item in batch]},
                )
                for k in range(BATCHES)
            ]
            try:
                responses = await asyncio.wait_for(asyncio.gather(*calls), timeout=300)
            except TimeoutError:
                pytest.fail(f"FerretDB ({ferretdb.backend}) stopped answering: writes deadlocked")
            assert [r.status_code for r in responses] == [200] * (SINGLE + BATCHES)
            assert all(r.json()["updated"] == 64 for r in responses[SINGLE:])
            assert service.collection.count_documents({}) == 65
    finally:
        mongo.close()


async def test_slots_are_served_in_order() -> None:
    slots = Slots(4)
    await slots.acquire(3)
    order: list[str] = []

    async def take(name: str, units: int) -> None:
        await slots.acquire(units)
        order.append(name)

    big = asyncio.create_task(take("big", 2))
    await asyncio.sleep(0)
    small = asyncio.create_task(take("small", 1))
    await asyncio.sleep(0.01)
    assert order == [], "one slot was free, but the small request must not overtake the big one"
    slots.release(3)
    await asyncio.gather(big, small)
    assert order == ["big", "small"]
    assert slots.free == 1


async def test_a_cancelled_waiter_neither_keeps_nor_blocks_slots() -> None:
    slots = Slots(2)
    await slots.acquire(2)
    blocked = asyncio.create_task(slots.acquire(2))
    behind = asyncio.create_task(slots.acquire(1))
    await asyncio.sleep(0)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    slots.release(1)
    await asyncio.wait_for(behind, 1)  # no longer queued behind the cancelled one
    assert slots.free == 0
    slots.release(1)
    slots.release(1)
    assert slots.free == 2


def test_slots_refuse_more_than_they_have() -> None:
    with pytest.raises(ValueError, match="cannot take 5 of 4 slots"):
        asyncio.run(Slots(4).acquire(5))
