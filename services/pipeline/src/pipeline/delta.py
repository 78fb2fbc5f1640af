"""The Delta table: open, find the high-water mark, overwrite, merge, maintain (delta-rs).

Every write is one Delta transaction: the data files are written first and become part of the
table only when the commit file lands, so a run that dies half-way leaves the table at its
previous version (the stray files are removed by a later vacuum).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from pipeline.schema import RECORD_SCHEMA

TABLE_NAME = "records"
TABLE_DESCRIPTION = "Records exported from MongoDB uploads.records by the pipeline code location"
# Row groups of at most this many rows keep the writer's buffers small however big the run is.
MAX_ROW_GROUP_ROWS = 128 * 1024

# MERGE on id. A matched row is rewritten only when MongoDB holds something different, so the
# overlap window of an incremental run (rows already exported) changes nothing and, when
# nothing else changed, delta-rs commits no new version.
MERGE_PREDICATE = "target.id = source.id"
UPDATE_WHEN_CHANGED = " OR ".join(
    f"(source.{column} IS DISTINCT FROM target.{column})"
    for column in ("score", "created_at", "updated_at")
)


class TargetError(RuntimeError):
    """The Delta table cannot be opened or written; the message names the location."""


@dataclass(frozen=True)
class DeltaTarget:
    """A table location: a local path or ``s3://bucket/prefix`` with its storage options."""

    uri: str
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    # Bytes per data file; None keeps delta-rs's default. Files are flushed as they fill.
    target_file_size: int | None = None

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri or self.uri.startswith("file://")

    def local_path(self) -> Path:
        return Path(self.uri.removeprefix("file://"))

    @property
    def location(self) -> str:
        """The URI, plus the S3 endpoint when one is set (for error messages)."""
        endpoint = self.storage_options.get("AWS_ENDPOINT_URL")
        return f"{self.uri} (S3 endpoint {endpoint})" if endpoint else self.uri


def open_table(target: DeltaTarget) -> DeltaTable | None:
    """The table at its newest version, or None when no table exists there yet."""
    try:
        return DeltaTable(target.uri, storage_options=target.storage_options or None)
    except TableNotFoundError:
        return None
    except (DeltaError, OSError) as exc:
        msg = f"cannot open the Delta table at {target.location}: {exc}"
        raise TargetError(msg) from None


def ensure_writable(target: DeltaTarget) -> None:
    """For a local path: create its directory now, so a bad path fails before MongoDB is read."""
    if not target.is_local:
        return
    path = target.local_path()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".pipeline-write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        msg = f"cannot write the Delta table at {path}: {exc.strerror or exc}"
        raise TargetError(msg) from None


def column_max(table: DeltaTable, column: str) -> dt.datetime | None:
    """The newest value of a timestamp column (None when the table is empty).

    Read from the per-file statistics in the log; when a file has none, that one column is
    scanned batch by batch instead.
    """
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return None
    stats = f"max.{column}"
    if stats in actions.column_names and actions.column(stats).null_count == 0:
        value = pc.max(actions.column(stats)).as_py()
    else:
        value = None
        for batch in table.to_pyarrow_dataset().to_batches(columns=[column]):
            batch_max = pc.max(batch.column(0)).as_py()
            if batch_max is not None and (value is None or batch_max > value):
                value = batch_max
    return value if isinstance(value, dt.datetime) else None


def high_water_mark(table: DeltaTable) -> dt.datetime | None:
    """The newest ``updated_at`` in the table: what the next incremental run starts from."""
    return column_max(table, "updated_at")


def _writer_properties() -> WriterProperties:
    return WriterProperties(max_row_group_size=MAX_ROW_GROUP_ROWS, compression="SNAPPY")


def overwrite(target: DeltaTarget, batches: Iterator[pa.RecordBatch]) -> None:
    """Replace the table's contents (or create it) with ``batches`` in one new version."""
    reader = pa.RecordBatchReader.from_batches(RECORD_SCHEMA, batches)
    size = target.target_file_size
    try:
        write_deltalake(
            target.uri,
            reader,
            mode="overwrite",
            schema_mode="overwrite",
            name=TABLE_NAME,
            description=TABLE_DESCRIPTION,
            # Stored in the table, so later MERGEs and compactions use the same size.
            configuration=None if size is None else {"delta.targetFileSize": str(size)},
            target_file_size=size,
            storage_options=target.storage_options or None,
            writer_properties=_writer_properties(),
        )
    except (DeltaError, OSError) as exc:
        msg = f"cannot write the Delta table at {target.location}: {exc}"
        raise TargetError(msg) from None


def merge(table: DeltaTable, batches: Iterator[pa.RecordBatch]) -> dict[str, Any]:
    """Upsert ``batches`` on ``id`` in one new version; returns delta-rs's merge metrics."""
    reader = pa.RecordBatchReader.from_batches(RECORD_SCHEMA, batches)
    try:
        return (
            table.merge(
                reader,
                predicate=MERGE_PREDICATE,
                source_alias="source",
                target_alias="target",
                writer_properties=_writer_properties(),
                streamed_exec=True,
            )
            .when_matched_update_all(predicate=UPDATE_WHEN_CHANGED)
            .when_not_matched_insert_all()
            .execute()
        )
    except (DeltaError, OSError) as exc:
        msg = f"cannot merge into the Delta table at {table.table_uri}: {exc}"
        raise TargetError(msg) from None


def compact(table: DeltaTable) -> dict[str, Any]:
    """Rewrite small files into bigger ones (a new version only when something was merged)."""
    try:
        return table.optimize.compact(writer_properties=_writer_properties())
    except (DeltaError, OSError) as exc:
        msg = f"cannot compact the Delta table at {table.table_uri}: {exc}"
        raise TargetError(msg) from None


def vacuum(table: DeltaTable, retention_hours: int) -> list[str]:
    """Delete files no version younger than ``retention_hours`` uses; returns their paths."""
    try:
        return table.vacuum(
            retention_hours=retention_hours, dry_run=False, enforce_retention_duration=False
        )
    except (DeltaError, OSError) as exc:
        msg = f"cannot vacuum the Delta table at {table.table_uri}: {exc}"
        raise TargetError(msg) from None
