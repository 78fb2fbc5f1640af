"""Response bodies as bytes, straight from MongoDB documents (orjson), in the shapes the
models in :mod:`apiserver.models` document: a record is
``{"id", "score", "created_at", "updated_at"}`` with UTC timestamps to the millisecond."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import orjson

Document = dict[str, Any]


def timestamp(value: datetime) -> str:
    """``2026-11-29T11:20:00.123Z``: what MongoDB stores (milliseconds), in UTC."""
    if value.tzinfo is None:  # BSON dates are UTC; a naive one came without the zone
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return value.isoformat(timespec="milliseconds")[:-6] + "Z"  # drop "+00:00"


def _record(doc: Document) -> dict[str, Any]:
    return {
        "id": doc["_id"],
        "score": doc["score"],
        "created_at": timestamp(doc["created_at"]),
        "updated_at": timestamp(doc["updated_at"]),
    }


def record(doc: Document) -> bytes:
    return orjson.dumps(_record(doc))


def records(docs: Iterable[Document]) -> bytes:
    return orjson.dumps([_record(doc) for doc in docs])


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
