"""Every MongoDB command carries maxTimeMS below the socket timeout, and a query that cannot
finish in time is stopped by the database itself: answered 504 at the deadline, no work left
running on the server, the next request unaffected."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from pymongo import AsyncMongoClient, MongoClient, monitoring

from apiserver.models import RecordIn
from apiserver.repository import RecordRepository
from apiserver.slots import Slots

if TYPE_CHECKING:
    from collections.abc import Callable

    from stacktools.servers.ferretdb import FerretDB

pytestmark = pytest.mark.anyio

RECORDS = 20_000
DEADLINE_MS = 50


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seed(mongo: MongoClient[dict[str, Any]], database: str, collection: str) -> None:
    now = datetime.now(UTC)
    records = mongo[database][collection]
    for start in range(0, RECORDS, 2000):
        records.insert_many(
            {"_id": f"rec-{n:07d}", "score": 0.5, "created_at": now, "updated_at": now}
            for n in range(start, start + 2000)
        )


async def test_a_slow_query_is_stopped_at_its_deadline(
    ferretdb_server: FerretDB,
    settings_for: Callable[..., Any],
    running_service: Callable[..., Any],
) -> None:
    settings = settings_for(
        ferretdb_server.uri, mongodb_timeout_ms=30_000, mongodb_max_time_ms=DEADLINE_MS
    )
    mongo: MongoClient[dict[str, Any]] = MongoClient(ferretdb_server.uri, socketTimeoutMS=300_000)
    try:
        seed(mongo, settings.mongodb_database, settings.mongodb_collection)
        # FerretDB 1.24 sorts in memory: the first page reads every record. Without a deadline:
        records = mongo[settings.mongodb_database][settings.mongodb_collection]
        began = time.monotonic()
        records.find_one({"_id": {"$gte": ""}}, sort=[("_id", 1)])
        unbounded = time.monotonic() - began
        assert unbounded > 4 * DEADLINE_MS / 1000, f"first page took {unbounded:.3f}s: not slow"
        async for service in running_service(settings, mongo):
            pid = ferretdb_server.pid
            assert pid is not None

            async def timed_read(client: Any) -> tuple[float, Any]:
                began = time.monotonic()
                response = await client.get("/internal-read")
                return time.monotonic() - began, response

            answers = await asyncio.gather(*(timed_read(service.client) for _ in range(4)))
            for seconds, response in answers:
                assert response.status_code == 504, response.text
                assert response.json() == {
                    "error": "database_timeout",
                    "message": f"the database stopped the command at its {DEADLINE_MS} ms "
                    "deadline (APISERVER_MONGODB_MAX_TIME_MS)",
                }
                assert seconds < min(unbounded, 2.0), "the deadline did not bound the request"
            # Nothing left running on the server: the scans were stopped, not abandoned.
            before = cpu_seconds(pid)
            await asyncio.sleep(1.0)
            assert cpu_seconds(pid) - before < 0.2, "FerretDB kept working after the answers"
            began = time.monotonic()
            one = await service.client.get("/internal-read", params={"id": "rec-0000001"})
            assert one.status_code == 200
            assert [item["id"] for item in one.json()] == ["rec-0000001"]
            assert time.monotonic() - began < 1.0
    finally:
        mongo.close()


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.seen.append((event.command_name, dict(event.command)))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


async def test_every_command_carries_max_time_ms(mongodb_uri: str) -> None:
    """What the repository sends for each route: reads, upserts, batches, the index."""
    commands = Commands()
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
        mongodb_uri, tz_aware=True, tzinfo=UTC, event_listeners=[commands]
    )
    collection = f"deadline_{time.monotonic_ns()}"
    repo = RecordRepository(
        client,
        "apiserver_tests",
        collection,
        ping_s=5.0,
        write_chunk=2,
        max_time_ms=1234,
        slots=Slots(4),
    )
    try:
        now = datetime.now(UTC)
        await repo.ping()
        await repo.upsert(RecordIn(id="a", score=0.5), now)
        await repo.upsert_many([RecordIn(id=rid, score=0.1) for rid in "abcde"], now)
        await repo.get("a")
        docs, more = await repo.page(None, 2)
        assert ([doc["_id"] for doc in docs], more) == (["a", "b"], True)
        await repo.page("b", 10)
    finally:
        await client["apiserver_tests"].drop_collection(collection)
        await client.close()
    # ping runs under its own timeout (CSOT); drop and endSessions are the clean-up.
    skipped = {"ping", "drop", "endSessions"}
    sent = [(name, command) for name, command in commands.seen if name not in skipped]
    names = {name for name, _ in sent}
    assert {"createIndexes", "findAndModify", "update", "find"} <= names
    missing = [name for name, command in sent if command.get("maxTimeMS") != 1234]
    assert not missing, f"commands without maxTimeMS=1234: {missing}"
