"""The Delta table's schema and the conversion of MongoDB documents into Arrow record batches.

MongoDB holds ``{_id, score, created_at, updated_at}``; the table holds
``id, score, created_at, updated_at, exported_at``. Every column is required: a document that
cannot fill a row (``records.problem``) or is dated in the future is skipped and reported,
never half-written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pipeline import records

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

# How many skipped documents of each kind a run names in its log and metadata (the counts are
# always exact).
EXAMPLES = 5


@dataclass
class Skipped:
    """Documents of one kind that did not become rows: how many, and a few of them by id."""

    count: int = 0
    examples: list[str] = field(default_factory=list)

    def add(self, document_id: object, reason: str) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(f"{records.shown_id(document_id)}: {reason}")


@dataclass
class Undecodable:
    """A document the BSON decoder refused (the ``_id`` as far as it could be read)."""

    document_id: object
    error: str


@dataclass
class Conversion:
    """What a run did with the documents it read, batch after batch."""

    # Documents dated at or after ``due`` (naive UTC) are from the future.
    exported_at: dt.datetime
    due: dt.datetime
    invalid: Skipped = field(default_factory=Skipped)
    future: Skipped = field(default_factory=Skipped)

    def batch(self, documents: Sequence[dict[str, Any] | Undecodable]) -> pa.RecordBatch:
        """The rows of ``documents``; invalid and future ones are counted, not converted."""
        ids: list[str] = []
        scores: list[float] = []
        created: list[dt.datetime] = []
        updated: list[dt.datetime] = []
        due = self.due
        for document in documents:
            if isinstance(document, Undecodable):
                self.invalid.add(document.document_id, f"cannot be decoded: {document.error}")
                continue
            reason = records.problem(document)
            if reason is not None:
                self.invalid.add(document.get("_id"), reason)
                continue
            created_at, updated_at = document["created_at"], document["updated_at"]
            if created_at >= due or updated_at >= due:
                stamp = max(created_at, updated_at)
                self.future.add(document["_id"], f"dated {stamp.isoformat()}Z, after {due}Z")
                continue
            ids.append(document["_id"])
            scores.append(float(document["score"]))
            created.append(created_at)
            updated.append(updated_at)
        exported = pa.scalar(self.exported_at, TIMESTAMP)
        arrays: list[pa.Array[Any]] = [
            pa.array(ids, pa.string()),
            pa.array(scores, pa.float64()),
            pa.array(created, TIMESTAMP),
            pa.array(updated, TIMESTAMP),
            pa.repeat(exported, len(ids)),
        ]
        return pa.RecordBatch.from_arrays(arrays, schema=RECORD_SCHEMA)


def newest_per_id(rows: pa.Table) -> tuple[pa.Table, int]:
    """One row per id, the one with the newest ``updated_at`` (on a tie the one read last).

    MongoDB can return a document twice when it is updated while an index scan runs; a MERGE
    source with an id twice would insert it twice or fail. Returns the rows and how many were
    dropped.
    """
    count = rows.num_rows
    if count == 0 or pc.count_distinct(rows.column("id")).as_py() == count:
        return rows, 0
    ordered = rows.append_column("read_order", pa.array(range(count), pa.int64()))
    order = pc.sort_indices(
        ordered,
        sort_keys=[("id", "ascending"), ("updated_at", "descending"), ("read_order", "descending")],
    )
    ordered = ordered.take(order).drop_columns(["read_order"]).combine_chunks()
    ids = ordered.column("id").chunk(0)
    first = pc.not_equal(ids.slice(1), ids.slice(0, count - 1))
    keep = pa.concat_arrays([pa.array([True]), first])
    newest = ordered.filter(keep)
    return newest, count - newest.num_rows


def utc_now_ms() -> dt.datetime:
    """The current UTC time truncated to milliseconds, like every timestamp in the stack."""
    now = dt.datetime.now(dt.UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)
