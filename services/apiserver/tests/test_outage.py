"""MongoDB stopped mid-test: /readyz and every database route answer 503 JSON; when
MongoDB is back, they recover without a restart."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from pymongo import MongoClient

from stacktools.servers.ferretdb import FerretDB, wait_until_stopped

if TYPE_CHECKING:
    from collections.abc import Callable

    from conftest import Service

pytestmark = pytest.mark.anyio


async def until(check: Callable[[], Any], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await anyio.sleep(0.2)


async def test_database_outage_and_recovery(
    ferretdb_server: FerretDB, settings_for: Callable[..., Any], running_service: Callable[..., Any]
) -> None:
    settings = settings_for(ferretdb_server.uri, mongodb_timeout_ms=1000)
    mongo: MongoClient[dict[str, Any]] = MongoClient(ferretdb_server.uri, socketTimeoutMS=30_000)
    try:
        async for service in running_service(settings, mongo):
            await outage(service, ferretdb_server)
    finally:
        mongo.close()


async def outage(service: Service, server: FerretDB) -> None:
    client = service.client
    assert (
        await client.post("/internal-insert", json={"id": "before", "score": 0.1})
    ).status_code == 200

    server.stop()
    wait_until_stopped(server.port)
    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json() == {
        "error": "database_unavailable",
        "message": "MongoDB did not answer a ping within 333 ms",
    }
    assert (await client.get("/healthz")).status_code == 200  # the process itself is fine

    calls = [
        client.post("/internal-insert", json={"id": "during", "score": 0.5}),
        client.post("/internal-insert/batch", json={"records": [{"id": "during-b", "score": 0.5}]}),
        client.get("/internal-read"),
        client.get("/internal-read", params={"id": "before"}),
    ]
    for call in calls:
        started = time.monotonic()
        response = await call
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "database_unavailable"
        assert "Traceback" not in response.text
        assert time.monotonic() - started < 5, "the MongoDB timeouts must bound the wait"

    server.start()

    async def ready_again() -> bool:
        return (await client.get("/readyz")).status_code == 200

    await until(ready_again)
    after = await client.post("/internal-insert", json={"id": "after", "score": 0.9})
    assert after.status_code == 200
    ids = [item["id"] for item in (await client.get("/internal-read")).json()]
    assert ids == ["after", "before"]
