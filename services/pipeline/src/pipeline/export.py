"""One export run: MongoDB records -> Delta table, full or incremental, in one transaction.

* No table yet, or ``full_refresh``: every document is streamed in natural order into an
  overwrite (a new version that replaces the previous contents atomically).
* Otherwise incremental (``window.py``): the documents changed since the table's mark minus
  the overlap, and before the run's due time, are read, reduced to one row per id and MERGEd
  on ``id``. MERGE rewrites a row only when MongoDB holds something different, so re-reading
  is harmless and a run with nothing new creates no table version.
* Documents that cannot become rows (``records.problem``) or are dated in the future are
  skipped, counted and named; the run goes on.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable
from pymongo.collection import Collection

from pipeline import delta, mongo
from pipeline.maintenance import MaintenanceOptions, maintain
from pipeline.schema import RECORD_SCHEMA, Conversion, Skipped, Undecodable, utc_now_ms
from pipeline.window import Mode, Window, plan

PROGRESS_EVERY_ROWS = 50_000
Documents = Iterator[list[mongo.Document | Undecodable]]


@dataclass(frozen=True)
class ExportOptions:
    full_refresh: bool = False
    overlap: dt.timedelta = dt.timedelta(minutes=5)
    maintenance: MaintenanceOptions = field(default_factory=MaintenanceOptions)


@dataclass
class ExportResult:
    mode: Mode
    window: Window
    version_before: int | None
    version: int
    rows_read: int
    invalid: Skipped
    future: Skipped
    rows_inserted: int = 0
    rows_updated: int = 0
    duplicates: int = 0
    files: delta.FileStats = field(default_factory=lambda: delta.FileStats(0, 0))
    seconds: float = 0.0
    maintenance: dict[str, Any] = field(default_factory=dict)


class DuplicateIdsError(RuntimeError):
    """A full read returned some id twice; the overwrite is abandoned before its commit."""


class _Stream:
    """MongoDB batches as Arrow batches, counting documents and reporting progress.

    delta-rs pulls the batches from inside its writer; an error raised here would reach the
    caller as a generic stream error, so the original is kept in ``error`` and re-raised.
    """

    def __init__(
        self, documents: Documents, conversion: Conversion, log: Callable[[str], None]
    ) -> None:
        self._documents = documents
        self.conversion = conversion
        self._log = log
        self.read = 0
        self.rows = 0
        self.error: BaseException | None = None
        self._next_progress = PROGRESS_EVERY_ROWS

    def batches(self, unique_ids: bool = False) -> Iterator[pa.RecordBatch]:
        """The rows; with ``unique_ids`` the stream fails at its end if an id came twice.

        That check keeps only the ids (about 40 bytes a row) instead of the rows: a full read
        is a collection scan, which visits every document once, so it never fires on MongoDB
        or FerretDB; if it does, the overwrite is abandoned and the run can be retried.
        """
        ids: list[pa.Array[Any]] = []
        try:
            for documents in self._documents:
                batch = self.conversion.batch(documents)
                self.read += len(documents)
                self.rows += batch.num_rows
                if self.read >= self._next_progress:
                    self._log(f"read {self.read} documents")
                    self._next_progress += PROGRESS_EVERY_ROWS
                if batch.num_rows:
                    if unique_ids:
                        ids.append(batch.column(0))
                    yield batch
            if unique_ids and ids:
                distinct = pc.count_distinct(pa.chunked_array(ids)).as_py()
                if distinct != self.rows:
                    msg = (
                        f"MongoDB returned {self.rows - distinct} documents twice during the "
                        "full read (updated while it ran); nothing was written"
                    )
                    raise DuplicateIdsError(msg)
        except Exception as exc:  # not GeneratorExit: delta-rs closing the stream is no error
            self.error = exc
            raise

    def table(self) -> pa.Table:
        return pa.Table.from_batches(list(self.batches()), schema=RECORD_SCHEMA)


def _first_nonempty(
    batches: Iterator[pa.RecordBatch],
) -> Iterator[pa.RecordBatch] | None:
    """``batches`` again after reading ahead to the first row; None when there is none."""
    first = next(batches, None)
    if first is None:
        return None

    def chain() -> Iterator[pa.RecordBatch]:
        yield first
        yield from batches

    return chain()


def _overwrite(window: Window, target: delta.DeltaTarget, stream: _Stream) -> Mode:
    """Write everything read as the table's new contents; "unchanged" for an empty read into
    an empty table (nothing to do)."""
    batches = stream.batches(unique_ids=True)
    try:
        if window.mode == "incremental":  # the table is empty
            nonempty = _first_nonempty(batches)
            if nonempty is None:
                return "unchanged"
            batches = nonempty
        delta.overwrite(target, batches)
    except Exception as exc:
        error = stream.error if stream.error is not None else exc
        if isinstance(error, DuplicateIdsError):
            raise mongo.SourceError(str(error), transient=True) from None
        if error is not exc:
            raise error from None
        raise
    return window.mode


def _merge(table: DeltaTable, stream: _Stream) -> tuple[Mode, dict[str, Any]]:
    rows = stream.table()
    if rows.num_rows == 0:
        return "unchanged", {}
    return "incremental", delta.merge(table, rows)


def _read(
    window: Window, collection: Collection[mongo.Document], source: mongo.MongoSource
) -> Documents:
    if window.reads_everything:
        return mongo.read_all(collection, source.batch_size, source.hosts)
    query = mongo.window_query(window.since, window.due)
    return mongo.read_window(collection, query, source.batch_size, source.hosts)


def export_records(
    source: mongo.MongoSource,
    target: delta.DeltaTarget,
    options: ExportOptions,
    log: Callable[[str], None],
) -> ExportResult:
    """Run one export and return what it did; raises SourceError, TargetError, or
    MaintenanceConfigError (before reading anything)."""
    started = time.monotonic()
    options.maintenance.validate()
    exported_at = utc_now_ms()
    delta.ensure_writable(target)
    table = delta.open_table(target)
    version_before = None if table is None else table.version()
    with mongo.open_collection(source) as collection:
        window = plan(table, options.full_refresh, options.overlap, exported_at, log)
        if not window.reads_everything and not mongo.has_updated_at_index(collection):
            log(
                f"{collection.full_name} has no index on updated_at: the incremental query "
                "reads the whole collection on the server"
            )
        log(
            f"{window.mode} export of {source.namespace} at {source.hosts} to {target.uri}: "
            + ("every document" if window.since is None else f"updated_at >= {window.since}Z")
            + f", before {window.due}Z"
        )
        conversion = Conversion(exported_at, window.due)
        stream = _Stream(_read(window, collection, source), conversion, log)
        metrics: dict[str, Any] = {}
        if window.reads_everything or table is None:
            mode = _overwrite(window, target, stream)
        else:
            mode, metrics = _merge(table, stream)
    table = delta.open_table(target)
    if table is None:
        msg = f"the Delta table at {target.uri} is missing right after writing it"
        raise delta.TargetError(msg)
    result = ExportResult(
        mode=mode,
        window=window,
        version_before=version_before,
        version=table.version(),
        rows_read=stream.read,
        invalid=stream.conversion.invalid,
        future=stream.conversion.future,
    )
    if metrics:
        result.rows_inserted = int(metrics.get("num_target_rows_inserted", 0))
        result.rows_updated = int(metrics.get("num_target_rows_updated", 0))
        result.duplicates = int(metrics.get("num_source_duplicates", 0))
    elif mode != "unchanged":
        result.rows_inserted = stream.rows
    if result.version == version_before:
        result.mode = "unchanged"
    result.files = delta.file_stats(target, table, version_before)
    _report_skipped(result, log)
    result.maintenance = maintain(target, table, options.maintenance, log)
    result.version = table.version()
    result.seconds = time.monotonic() - started
    log(
        f"{result.mode}: read {result.rows_read} documents, inserted {result.rows_inserted}, "
        f"updated {result.rows_updated}; wrote {result.files.files_added} files, "
        f"{result.files.bytes_written} bytes (table {result.files.table_bytes} bytes); "
        f"table version {result.version} (was {result.version_before}) in {result.seconds:.1f}s"
    )
    return result


def _report_skipped(result: ExportResult, log: Callable[[str], None]) -> None:
    if result.duplicates:
        log(f"{result.duplicates} documents were read twice; the newest of each was kept")
    if result.invalid.count:
        log(
            f"left out {result.invalid.count} invalid documents, for example: "
            + "; ".join(result.invalid.examples)
        )
    if result.future.count:
        log(
            f"left out {result.future.count} documents dated after {result.window.due}Z "
            "(a writer's clock ahead, or bad data); they are exported once their time has "
            "come, for example: " + "; ".join(result.future.examples)
        )
