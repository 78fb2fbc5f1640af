"""One export run: MongoDB records -> Delta table, full or incremental, in one transaction.

* No table yet, or ``full_refresh``: every document is streamed into an overwrite (a new
  version that replaces the previous contents atomically).
* Otherwise incremental: the high-water mark is the newest ``updated_at`` in the table; the
  documents with ``updated_at >= mark - overlap`` are MERGEd on ``id``. The overlap re-reads
  documents a slower concurrent writer may have committed with an earlier timestamp; MERGE
  rewrites a row only when MongoDB holds something different, so re-reading is harmless and a
  run with nothing new creates no table version. An empty read skips the MERGE altogether.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa
from deltalake import DeltaTable
from pymongo.collection import Collection

from pipeline import delta, mongo
from pipeline.schema import InvalidDocuments, to_record_batch, utc_now_ms

Mode = Literal["created", "full_refresh", "incremental", "unchanged"]
PROGRESS_EVERY_ROWS = 50_000


@dataclass(frozen=True)
class ExportOptions:
    full_refresh: bool = False
    overlap: dt.timedelta = dt.timedelta(minutes=5)
    compact: bool = False
    vacuum: bool = False
    vacuum_retention_hours: int = 168


@dataclass
class ExportResult:
    mode: Mode
    version_before: int | None
    version: int
    rows_read: int
    invalid: InvalidDocuments
    since: dt.datetime | None = None
    rows_inserted: int = 0
    rows_updated: int = 0
    seconds: float = 0.0
    maintenance: dict[str, Any] = field(default_factory=dict)


class _BatchStream:
    """MongoDB batches as Arrow batches, counting rows and reporting progress.

    delta-rs pulls the batches from inside its writer; an error raised here would reach the
    caller as a generic stream error, so the original is kept in ``error`` and re-raised.
    """

    def __init__(
        self,
        documents: Iterator[list[mongo.Document]],
        exported_at: dt.datetime,
        log: Callable[[str], None],
    ) -> None:
        self._documents = documents
        self._exported_at = exported_at
        self._log = log
        self.invalid = InvalidDocuments()
        self.rows = 0
        self.error: BaseException | None = None
        self._next_progress = PROGRESS_EVERY_ROWS

    def batches(self) -> Iterator[pa.RecordBatch]:
        try:
            for documents in self._documents:
                batch = to_record_batch(documents, self._exported_at, self.invalid)
                self.rows += len(documents)
                if self.rows >= self._next_progress:
                    self._log(f"read {self.rows} documents")
                    self._next_progress += PROGRESS_EVERY_ROWS
                if batch.num_rows:
                    yield batch
        except BaseException as exc:
            self.error = exc
            raise

    def first_nonempty(self) -> tuple[pa.RecordBatch | None, Iterator[pa.RecordBatch]]:
        """Read ahead to the first non-empty batch: None when there is nothing to write."""
        iterator = self.batches()
        first = next(iterator, None)
        return first, iterator


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


def _plan(
    table: DeltaTable | None,
    options: ExportOptions,
    collection: Collection[mongo.Document],
    log: Callable[[str], None],
) -> tuple[Mode, dt.datetime | None]:
    """The kind of run and the ``updated_at`` it reads from (None: every document)."""
    if table is None:
        return "created", None
    if options.full_refresh:
        return "full_refresh", None
    mark = delta.high_water_mark(table)
    if mark is None:
        return "incremental", None
    if not mongo.has_updated_at_index(collection):
        log(
            f"{collection.full_name} has no index on updated_at: the incremental query "
            "reads the whole collection on the server"
        )
    return "incremental", mark - options.overlap


def _write(
    mode: Mode, table: DeltaTable | None, target: delta.DeltaTarget, stream: _BatchStream
) -> tuple[Mode, dict[str, Any]]:
    """Write the stream as ``mode`` says; the mode becomes "unchanged" when nothing was read."""
    try:
        if mode != "incremental" or table is None:
            delta.overwrite(target, stream.batches())
            return mode, {}
        first, rest = stream.first_nonempty()
        if first is None:
            return "unchanged", {}
        return mode, delta.merge(table, _chain(first, rest))
    except Exception as exc:
        if stream.error is not None and stream.error is not exc:
            raise stream.error from None
        raise


def export_records(
    source: mongo.MongoSource,
    target: delta.DeltaTarget,
    options: ExportOptions,
    log: Callable[[str], None],
) -> ExportResult:
    """Run one export and return what it did; raises SourceError or TargetError."""
    started = time.monotonic()
    exported_at = utc_now_ms()
    delta.ensure_writable(target)
    table = delta.open_table(target)
    version_before = None if table is None else table.version()
    with mongo.open_collection(source) as collection:
        mode, since = _plan(table, options, collection, log)
        log(
            f"{mode} export of {source.namespace} at {source.hosts} to {target.uri}"
            + ("" if since is None else f" (updated_at >= {since.isoformat()})")
        )
        documents = mongo.document_batches(
            collection, mongo.updated_since(since), source.batch_size, source.hosts
        )
        stream = _BatchStream(documents, exported_at, log)
        mode, metrics = _write(mode, table, target, stream)
    table = delta.open_table(target)
    if table is None:
        msg = f"the Delta table at {target.uri} is missing right after writing it"
        raise delta.TargetError(msg)
    result = ExportResult(
        mode=mode,
        version_before=version_before,
        version=table.version(),
        rows_read=stream.rows,
        invalid=stream.invalid,
        since=since,
    )
    if mode == "incremental":
        result.rows_inserted = int(metrics.get("num_target_rows_inserted", 0))
        result.rows_updated = int(metrics.get("num_target_rows_updated", 0))
        if result.version == version_before:
            result.mode = "unchanged"
    elif mode != "unchanged":
        result.rows_inserted = stream.rows - stream.invalid.count
    if stream.invalid.count:
        log(
            f"left out {stream.invalid.count} invalid documents, for example: "
            + "; ".join(stream.invalid.examples)
        )
    result.maintenance = _maintain(table, options, log)
    result.version = table.version()
    result.seconds = time.monotonic() - started
    log(
        f"{result.mode}: read {result.rows_read} documents, inserted {result.rows_inserted}, "
        f"updated {result.rows_updated}; table version {result.version} "
        f"(was {result.version_before}) in {result.seconds:.1f}s"
    )
    return result


def _maintain(
    table: DeltaTable, options: ExportOptions, log: Callable[[str], None]
) -> dict[str, Any]:
    done: dict[str, Any] = {}
    if options.compact:
        metrics = delta.compact(table)
        done["compact_files_added"] = int(metrics.get("numFilesAdded", 0))
        done["compact_files_removed"] = int(metrics.get("numFilesRemoved", 0))
        log(f"compaction: {done['compact_files_removed']} files into {done['compact_files_added']}")
    if options.vacuum:
        removed = delta.vacuum(table, options.vacuum_retention_hours)
        done["vacuum_files_removed"] = len(removed)
        log(f"vacuum: removed {len(removed)} files older than {options.vacuum_retention_hours}h")
    return done
