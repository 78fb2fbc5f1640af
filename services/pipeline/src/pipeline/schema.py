"""The Delta table's schema and the conversion of MongoDB documents into Arrow record batches.

MongoDB holds ``{_id, score, created_at, updated_at}``; the table holds
``id, score, created_at, updated_at, exported_at``. Every column is required: a document that
cannot fill a row (missing field, wrong type) is reported and left out, never half-written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

MAX_ID_LENGTH = 256
TIMESTAMP = pa.timestamp("us", tz="UTC")

_FIELDS: list[pa.Field[Any]] = [
    pa.field("id", pa.string(), nullable=False),
    pa.field("score", pa.float64(), nullable=False),
    pa.field("created_at", TIMESTAMP, nullable=False),
    pa.field("updated_at", TIMESTAMP, nullable=False),
    pa.field("exported_at", TIMESTAMP, nullable=False),
]
RECORD_SCHEMA = pa.schema(_FIELDS)

# The same schema as the Delta log spells it: (name, Delta type, nullable).
DELTA_FIELDS: tuple[tuple[str, str, bool], ...] = (
    ("id", "string", False),
    ("score", "double", False),
    ("created_at", "timestamp", False),
    ("updated_at", "timestamp", False),
    ("exported_at", "timestamp", False),
)

# How many invalid documents a run names in its log and metadata (the count is always exact).
INVALID_EXAMPLES = 5


@dataclass
class InvalidDocuments:
    """Documents that could not become rows: how many, and a few of them by ``_id``."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, document_id: object, reason: str) -> None:
        self.count += 1
        if len(self.examples) < INVALID_EXAMPLES:
            self.examples.append(f"{document_id!r}: {reason}")


def utc_now_ms() -> dt.datetime:
    """The current UTC time truncated to milliseconds, like every timestamp in the stack."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _problem(document: dict[str, Any]) -> str | None:
    """Why a document cannot become a row, or None when it can."""
    doc_id = document.get("_id")
    if not isinstance(doc_id, str) or not 1 <= len(doc_id) <= MAX_ID_LENGTH:
        return f"_id must be a string of 1..{MAX_ID_LENGTH} characters"
    score = document.get("score")
    if not isinstance(score, int | float):
        return "score must be a number"
    for name in ("created_at", "updated_at"):
        if not isinstance(document.get(name), dt.datetime):
            return f"{name} must be a date"
    return None


def _arrays(documents: Sequence[dict[str, Any]], exported_at: dt.datetime) -> list[pa.Array[Any]]:
    return [
        pa.array([d["_id"] for d in documents], pa.string()),
        pa.array([d["score"] for d in documents], pa.float64()),
        pa.array([d["created_at"] for d in documents], TIMESTAMP),
        pa.array([d["updated_at"] for d in documents], TIMESTAMP),
        pa.array([exported_at] * len(documents), TIMESTAMP),
    ]


def to_record_batch(
    documents: Sequence[dict[str, Any]],
    exported_at: dt.datetime,
    invalid: InvalidDocuments,
) -> pa.RecordBatch:
    """One record batch from MongoDB documents; invalid ones are counted in ``invalid``.

    The fast path converts whole columns at once; only when Arrow rejects a column (or a value
    is missing) are the documents checked one by one to find and drop the bad ones.
    """
    try:
        arrays = _arrays(documents, exported_at)
        if all(array.null_count == 0 for array in arrays) and all(
            1 <= len(d["_id"]) <= MAX_ID_LENGTH for d in documents
        ):
            return pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)
    except (KeyError, TypeError, pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    valid = []
    for document in documents:
        problem = _problem(document)
        if problem is None:
            valid.append(document)
        else:
            invalid.add(document.get("_id"), problem)
    return pa.RecordBatch.from_arrays(_arrays(valid, exported_at), schema=RECORD_SCHEMA)
