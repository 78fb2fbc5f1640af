"""The Delta table: open, find the export's mark, overwrite, merge (delta-rs).

Every write is one Delta transaction: the data files are written first and become part of the
table only when the commit file lands, so a run that dies half-way leaves the table at its
previous version; its stray files are removed by the maintenance vacuum (``maintenance.py``).

Layout: data files of at most ``target_file_size`` bytes (1 MiB unless set), each holding
records created in one stretch of time (the full export reads in natural order; a MERGE appends
new records in new files and rewrites an updated row in the file that holds it). delta-rs
rewrites whole files, and only the files holding a changed row: updates of recent records then
rewrite the newest files, not the table. (delta-rs 1.6 writes no deletion vectors, so updates
scattered over the whole history still rewrite every file that holds one.)
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError

from pipeline.schema import RECORD_SCHEMA, newest_per_id

TABLE_NAME = "records"
TABLE_DESCRIPTION = "Records exported from MongoDB uploads.records by the pipeline code location"
# Row groups of at most this many rows keep the writer's buffers small however big the run is.
MAX_ROW_GROUP_ROWS = 128 * 1024
# Bytes per data file: about 17,000 records with the generator's 36-character ids (60 bytes a
# row compressed), 30,000 with short ones. Small for Delta, in proportion to this table (60 MB
# per million records): an update of recent records rewrites about 1 MiB, not the table.
DEFAULT_TARGET_FILE_SIZE = 1024 * 1024

# MERGE on id. A matched row is rewritten only when MongoDB holds something different, so the
# overlap window of an incremental run (rows already exported) changes nothing and, when
# nothing else changed, delta-rs commits no new version.
MERGE_PREDICATE = "target.id = source.id"
UPDATE_WHEN_CHANGED = " OR ".join(
    f"(source.{column} IS DISTINCT FROM target.{column})"
    for column in ("score", "created_at", "updated_at")
)


class TargetError(RuntimeError):
    """The Delta table cannot be opened or written; the message names the location.

    ``transient``: another writer committed first (a later attempt plans afresh).
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class DeltaTarget:
    """A table location: a local path or ``s3://bucket/prefix`` with its storage options."""

    uri: str
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)
    # Bytes per data file; files are flushed as they fill. Stored in the table when it is
    # (re)written, so later MERGEs and compactions use the same size.
    target_file_size: int = DEFAULT_TARGET_FILE_SIZE

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
    # A name of its own: runs that start together must not remove each other's probe.
    probe = path / f".pipeline-write-probe-{uuid.uuid4().hex}"
    try:
        path.mkdir(parents=True, exist_ok=True)
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


def export_mark(table: DeltaTable) -> dt.datetime | None:
    """The newest ``exported_at``: the start of the last run that wrote rows.

    That run read every document changed before its start, so the next incremental run
    starts there (minus the overlap). It comes from the runs' own clock, never from the
    documents' timestamps, so a document dated in the future cannot move it.
    """
    return column_max(table, "exported_at")


def writer_properties() -> WriterProperties:
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
            configuration={"delta.targetFileSize": str(size)},
            target_file_size=size,
            storage_options=target.storage_options or None,
            writer_properties=writer_properties(),
        )
    except (DeltaError, OSError) as exc:
        msg = f"cannot write the Delta table at {target.location}: {exc}"
        raise TargetError(msg, transient=isinstance(exc, CommitFailedError)) from None


def merge(table: DeltaTable, source: pa.Table | Iterable[pa.RecordBatch]) -> dict[str, Any]:
    """Upsert ``source`` on ``id`` in one new version; returns delta-rs's merge metrics.

    The source is first reduced to one row per id (the newest ``updated_at``): MERGE with an
    id twice in its source would insert it twice, or fail on an id the table holds. Metric
    ``num_source_duplicates`` counts the rows dropped that way.
    """
    rows = source if isinstance(source, pa.Table) else _table(source)
    rows, duplicates = newest_per_id(rows)
    try:
        metrics = (
            table.merge(
                rows,
                predicate=MERGE_PREDICATE,
                source_alias="source",
                target_alias="target",
                writer_properties=writer_properties(),
                # The source is in memory: delta-rs reads its id range first and skips
                # target files outside it.
                streamed_exec=False,
            )
            .when_matched_update_all(predicate=UPDATE_WHEN_CHANGED)
            .when_not_matched_insert_all()
            .execute()
        )
    except (DeltaError, OSError) as exc:
        msg = f"cannot merge into the Delta table at {table.table_uri}: {exc}"
        raise TargetError(msg, transient=isinstance(exc, CommitFailedError)) from None
    return {**metrics, "num_source_duplicates": duplicates}


def _table(batches: Iterable[pa.RecordBatch]) -> pa.Table:
    return pa.Table.from_batches(list(batches), schema=RECORD_SCHEMA)


@dataclass(frozen=True)
class FileStats:
    """Data files and bytes of a table version, and what one commit added."""

    files: int
    table_bytes: int
    files_added: int = 0
    bytes_written: int = 0


def file_stats(target: DeltaTarget, table: DeltaTable, version_before: int | None) -> FileStats:
    """Size of the table now and of the files added since ``version_before`` (log only)."""
    now = _sizes(table)
    if version_before is None:
        before: dict[str, int] = {}
    elif version_before == table.version():
        before = now
    else:
        before = _sizes(
            DeltaTable(
                target.uri, version=version_before, storage_options=target.storage_options or None
            )
        )
    added = {path: size for path, size in now.items() if path not in before}
    return FileStats(len(now), sum(now.values()), len(added), sum(added.values()))


def _sizes(table: DeltaTable) -> dict[str, int]:
    actions = pa.table(table.get_add_actions(flatten=True))
    paths = actions.column("path").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    return {str(path): int(size or 0) for path, size in zip(paths, sizes, strict=True)}
