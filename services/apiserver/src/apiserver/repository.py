"""MongoDB access for records: ``{_id: id, score, created_at, updated_at}``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

import pymongo
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, OperationFailure, WriteConcernError

from apiserver.models import RecordIn
from apiserver.settings import Settings
from apiserver.slots import Slots

Document = dict[str, Any]
UPDATED_AT_INDEX = "updated_at_1"
Outcome = Literal["inserted", "updated"]


def connect(settings: Settings) -> AsyncMongoClient[Document]:
    """One client per process; it connects lazily, so start-up works while MongoDB is down."""
    timeout = settings.mongodb_timeout_ms
    return AsyncMongoClient(
        settings.mongodb_uri,
        serverSelectionTimeoutMS=timeout,
        connectTimeoutMS=timeout,
        socketTimeoutMS=timeout,
        maxPoolSize=settings.mongodb_max_pool_size,
        tz_aware=True,
        tzinfo=UTC,
        appname="apiserver",
    )


def _update(score: float, now: datetime) -> Document:
    return {"$set": {"score": score, "updated_at": now}, "$setOnInsert": {"created_at": now}}


class BatchItem(TypedDict):
    id: str
    status: Outcome | Literal["failed"]
    error: str | None


class RecordRepository:
    """Every MongoDB operation on the records; each carries ``maxTimeMS`` (the server stops
    it at the deadline), and writes hold one of ``slots`` per statement while in flight."""

    def __init__(
        self,
        client: AsyncMongoClient[Document],
        database: str,
        collection: str,
        *,
        ping_s: float,
        write_chunk: int,
        max_time_ms: int,
        slots: Slots,
    ) -> None:
        self._db = client[database]
        self._records = self._db[collection]
        self._ping_s = ping_s
        self._write_chunk = write_chunk
        self._max_time_ms = max_time_ms
        self._slots = slots
        self._indexed = False

    async def ping(self) -> None:
        """Answer only when MongoDB does; the first successful call also ensures the indexes."""
        with pymongo.timeout(self._ping_s):
            await self._db.command("ping")
        if not self._indexed:
            await self.ensure_indexes()

    async def ensure_indexes(self) -> None:
        """The index on ``updated_at`` that the Delta export's incremental query reads by.

        Idempotent (createIndexes on an existing index is a no-op). Run from readiness rather
        than at start-up, so the process starts while MongoDB is still unreachable.
        """
        await self._records.create_index(
            [("updated_at", pymongo.ASCENDING)], name=UPDATED_AT_INDEX, maxTimeMS=self._max_time_ms
        )
        self._indexed = True

    async def upsert(self, record: RecordIn, now: datetime) -> Document:
        """Insert or update one record and return the stored document.

        Two concurrent upserts of a new id can both try to insert; the loser gets a duplicate
        key error, and its retry then finds the document and updates it.
        """
        await self._slots.acquire(1)
        try:
            try:
                doc = await self._upsert_one(record, now)
            except DuplicateKeyError:
                doc = await self._upsert_one(record, now)
        finally:
            self._slots.release(1)
        if doc is None:  # cannot happen with upsert=True and ReturnDocument.AFTER
            msg = f"upsert of {record.id!r} returned no document"
            raise RuntimeError(msg)
        return doc

    async def _upsert_one(self, record: RecordIn, now: datetime) -> Document | None:
        return await self._records.find_one_and_update(
            {"_id": record.id},
            _update(record.score, now),
            upsert=True,
            return_document=ReturnDocument.AFTER,
            maxTimeMS=self._max_time_ms,
        )

    async def upsert_many(self, records: Sequence[RecordIn], now: datetime) -> list[BatchItem]:
        """Upsert records with distinct ids in unordered bulk writes; result per record.

        The records go out in ``update`` commands of at most ``write_chunk`` statements
        (default 32), each holding that many slots while in flight: FerretDB 1.24.2 keeps a
        backend connection per statement that matched a document until the command ends
        (APISERVER_MONGODB_MAX_WRITE_STATEMENTS). Records a bulk write did not confirm (in
        practice: duplicate keys when a concurrent request inserted the same new id first)
        are then upserted one by one.
        """
        outcome: dict[str, Outcome] = {}
        for start in range(0, len(records), self._write_chunk):
            chunk = records[start : start + self._write_chunk]
            await self._slots.acquire(len(chunk))
            try:
                outcome.update(await self._write(chunk, now))
            finally:
                self._slots.release(len(chunk))
        results: list[BatchItem] = []
        for record in records:
            status = outcome.get(record.id)
            if status is None:
                results.append(await self._upsert_alone(record, now))
            else:
                results.append({"id": record.id, "status": status, "error": None})
        return results

    async def _upsert_alone(self, record: RecordIn, now: datetime) -> BatchItem:
        try:
            stored = await self.upsert(record, now)
        except OperationFailure as exc:  # e.g. a duplicate key twice; not connection errors
            return {"id": record.id, "status": "failed", "error": str(exc.details or exc)}
        status: Outcome = "inserted" if stored["created_at"] == now else "updated"
        return {"id": record.id, "status": status, "error": None}

    async def _write(self, records: Sequence[RecordIn], now: datetime) -> dict[str, Outcome]:
        """One ``update`` command; returns the outcome of each record known to be written.

        The command is sent directly rather than through ``bulk_write``: on FerretDB 1.24.2
        a reply with write errors lacks ``n``/``nModified``/``upserted`` (pymongo's
        bulk_write then fails with KeyError), its indexes are not statement positions, and
        it stops at the first error despite ``ordered: false``. So ``upserted`` is read by
        ``_id``, and after write errors what was written is read back from the documents
        (``updated_at`` equal to this request's timestamp), right on MongoDB and FerretDB.
        """
        reply = await self._db.command(
            {
                "update": self._records.name,
                "updates": [
                    {"q": {"_id": r.id}, "u": _update(r.score, now), "upsert": True}
                    for r in records
                ],
                "ordered": False,
                "maxTimeMS": self._max_time_ms,  # MongoDB honours it; FerretDB ignores it
            }
        )
        if "writeConcernError" in reply:
            raise WriteConcernError(
                str(reply["writeConcernError"].get("errmsg", "")), details=reply
            )
        ids = [r.id for r in records]
        if not reply.get("writeErrors"):
            inserted = {entry["_id"] for entry in reply.get("upserted", [])}
            return {rid: "inserted" if rid in inserted else "updated" for rid in ids}
        written: dict[str, Outcome] = {}
        async for doc in self._records.find(
            {"_id": {"$in": ids}},
            projection={"created_at": 1, "updated_at": 1},
            max_time_ms=self._max_time_ms,
        ):
            if doc.get("updated_at") == now:
                written[doc["_id"]] = "inserted" if doc.get("created_at") == now else "updated"
        return written

    async def get(self, record_id: str) -> Document | None:
        return await self._records.find_one({"_id": record_id}, max_time_ms=self._max_time_ms)

    async def page(self, after: str | None, limit: int) -> tuple[list[Document], bool]:
        """Up to ``limit`` records with ids above ``after``; also whether more follow."""
        # Comparison operators match only values of the same BSON type, so ``$gte ""`` keeps
        # the keyset to string ids even if something else wrote to the collection.
        query: Document = {"_id": {"$gte": ""}} if after is None else {"_id": {"$gt": after}}
        cursor = self._records.find(
            query, sort=[("_id", 1)], limit=limit + 1, max_time_ms=self._max_time_ms
        )
        docs = await cursor.to_list(length=limit + 1)
        return docs[:limit], len(docs) > limit
