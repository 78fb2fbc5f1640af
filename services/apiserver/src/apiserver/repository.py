"""MongoDB access for records: ``{_id: id, score, created_at, updated_at}``."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import pymongo
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError, WriteConcernError

from apiserver.models import BatchItem, Record, RecordIn
from apiserver.settings import Settings

Document = dict[str, Any]
DUPLICATE_KEY = 11000


def connect(settings: Settings) -> AsyncMongoClient[Document]:
    """One client per process; it connects lazily, so start-up works while MongoDB is down."""
    timeout = settings.mongodb_timeout_ms
    return AsyncMongoClient(
        settings.mongodb_uri,
        serverSelectionTimeoutMS=timeout,
        connectTimeoutMS=timeout,
        socketTimeoutMS=timeout,
        tz_aware=True,
        tzinfo=UTC,
        appname="apiserver",
    )


def _update(score: float, now: datetime) -> Document:
    return {"$set": {"score": score, "updated_at": now}, "$setOnInsert": {"created_at": now}}


def to_record(doc: Document) -> Record:
    return Record(
        id=doc["_id"],
        score=doc["score"],
        created_at=doc["created_at"],
        updated_at=doc["updated_at"],
    )


class RecordRepository:
    def __init__(
        self, client: AsyncMongoClient[Document], database: str, collection: str, ping_s: float
    ) -> None:
        self._db = client[database]
        self._records = self._db[collection]
        self._ping_s = ping_s

    async def ping(self) -> None:
        with pymongo.timeout(self._ping_s):
            await self._db.command("ping")

    async def upsert(self, record: RecordIn, now: datetime) -> Record:
        """Insert or update one record and return what is stored.

        Two concurrent upserts of a new id can both try to insert; the loser gets a duplicate
        key error, and its retry then finds the document and updates it.
        """
        try:
            doc = await self._upsert_one(record, now)
        except DuplicateKeyError:
            doc = await self._upsert_one(record, now)
        if doc is None:  # cannot happen with upsert=True and ReturnDocument.AFTER
            msg = f"upsert of {record.id!r} returned no document"
            raise RuntimeError(msg)
        return to_record(doc)

    async def _upsert_one(self, record: RecordIn, now: datetime) -> Document | None:
        return await self._records.find_one_and_update(
            {"_id": record.id},
            _update(record.score, now),
            upsert=True,
            return_document=ReturnDocument.AFTER,
        )

    async def upsert_many(self, records: Sequence[RecordIn], now: datetime) -> list[BatchItem]:
        """Upsert records with distinct ids in one unordered bulk write; result per record.

        Statements that fail (in practice: a duplicate key when a concurrent request inserted
        the same new id first) are retried once, and then reported as failed.
        """
        by_id = {record.id: record for record in records}
        outcome: dict[str, str] = {}
        pending = list(by_id)
        errors: list[str] = []
        for _ in range(2):
            done, errors = await self._write(pending, by_id, now)
            outcome.update(done)
            pending = [rid for rid in pending if rid not in done]
            if not pending:
                break
        message = "; ".join(sorted(set(errors))) or "not written"
        return [
            BatchItem(id=rid, status="failed", error=message)
            if rid not in outcome
            else BatchItem(id=rid, status="inserted" if outcome[rid] == "inserted" else "updated")
            for rid in by_id
        ]

    async def _write(
        self, ids: list[str], by_id: dict[str, RecordIn], now: datetime
    ) -> tuple[dict[str, str], list[str]]:
        """One ``update`` command; returns {id: "inserted"|"updated"} for what was written.

        The command is sent directly rather than through ``bulk_write``: on FerretDB 1.24
        a reply with write errors lacks ``n``/``nModified``/``upserted`` (pymongo's
        bulk_write then fails with KeyError) and its indexes are not the statement
        positions. So ``upserted`` is read by ``_id``, and after write errors the outcome is
        read back from the documents themselves (``updated_at``/``created_at`` equal to this
        request's timestamp), which is right on MongoDB and FerretDB alike.
        """
        reply = await self._db.command(
            {
                "update": self._records.name,
                "updates": [
                    {"q": {"_id": rid}, "u": _update(by_id[rid].score, now), "upsert": True}
                    for rid in ids
                ],
                "ordered": False,
            }
        )
        if "writeConcernError" in reply:
            raise WriteConcernError(
                str(reply["writeConcernError"].get("errmsg", "")), details=reply
            )
        write_errors = reply.get("writeErrors", [])
        if not write_errors:
            inserted = {entry["_id"] for entry in reply.get("upserted", [])}
            return {rid: "inserted" if rid in inserted else "updated" for rid in ids}, []
        messages = [str(error.get("errmsg", "write error")) for error in write_errors]
        written: dict[str, str] = {}
        async for doc in self._records.find(
            {"_id": {"$in": ids}}, projection={"created_at": 1, "updated_at": 1}
        ):
            if doc.get("updated_at") == now:
                written[doc["_id"]] = "inserted" if doc.get("created_at") == now else "updated"
        return written, messages

    async def get(self, record_id: str) -> Record | None:
        doc = await self._records.find_one({"_id": record_id})
        return None if doc is None else to_record(doc)

    async def page(self, after: str | None, limit: int) -> tuple[list[Record], bool]:
        """Up to ``limit`` records with ids above ``after``; also whether more follow."""
        # Comparison operators match only values of the same BSON type, so ``$gte ""`` keeps
        # the keyset to string ids even if something else wrote to the collection.
        query: Document = {"_id": {"$gte": ""}} if after is None else {"_id": {"$gt": after}}
        cursor = self._records.find(query, sort=[("_id", 1)], limit=limit + 1)
        docs = await cursor.to_list(length=limit + 1)
        return [to_record(doc) for doc in docs[:limit]], len(docs) > limit
