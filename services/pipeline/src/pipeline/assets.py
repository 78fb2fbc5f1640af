"""The ``records_delta`` asset: the Delta table ``records`` exported from MongoDB."""
# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import datetime as dt
from typing import Any

import dagster as dg
from pydantic import Field

from pipeline.delta import TargetError
from pipeline.export import ExportOptions, ExportResult, export_records
from pipeline.maintenance import MIN_RETENTION_HOURS, MaintenanceConfigError, MaintenanceOptions
from pipeline.mongo import SourceError
from pipeline.resources import DeltaTableResource, MongoResource

ASSET_KEY = dg.AssetKey("records_delta")
# Dagster concurrency pool of every writer of the table. With a limit of 1 on the instance
# (dagster.yaml `concurrency: pools: default_limit: 1`, or `dagster instance concurrency set
# records_delta 1`) a second run's step waits until the first one's has finished, however the
# runs were started (schedule, UI, CLI).
POOL = "records_delta"


class ExportConfig(dg.Config):
    """Run configuration of one export; the defaults are what the schedule runs."""

    full_refresh: bool = Field(
        default=False, description="Rebuild the table from every document (one overwrite)"
    )
    overlap_seconds: int = Field(
        default=300,
        ge=0,
        description=(
            "Re-read documents changed this long before the last export started (writers "
            "whose clocks run behind, writes still in flight)"
        ),
    )
    compact: bool = Field(default=False, description="Compact small files after writing")
    vacuum: bool = Field(
        default=False,
        description="Delete files no version within the retention uses (incl. crash debris)",
    )
    vacuum_retention_hours: int = Field(
        default=MIN_RETENTION_HOURS, ge=0, description="Vacuum retention"
    )
    vacuum_force: bool = Field(
        default=False,
        description=f"Allow vacuum_retention_hours below {MIN_RETENTION_HOURS}",
    )

    def options(self) -> ExportOptions:
        return ExportOptions(
            full_refresh=self.full_refresh,
            overlap=dt.timedelta(seconds=self.overlap_seconds),
            maintenance=MaintenanceOptions(
                compact=self.compact,
                vacuum=self.vacuum,
                vacuum_retention_hours=self.vacuum_retention_hours,
                vacuum_force=self.vacuum_force,
            ),
        )


def pool_limit(instance: dg.DagsterInstance) -> int | None:
    """The limit this instance enforces on ``POOL`` for every step, or None (no limit)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return None
    granularity = instance.get_concurrency_config().pool_config.pool_granularity
    if granularity is not None and granularity.value == "run":
        return None  # only runs that pass the run queue are held back
    for pool in storage.get_pool_limits():
        if pool.name == POOL:
            return pool.limit
    return instance.global_op_concurrency_default_limit


def _metadata(result: ExportResult, uri: str, limit: int | None) -> dict[str, Any]:
    window = result.window
    metadata: dict[str, Any] = {
        "mode": result.mode,
        "table_uri": uri,
        "table_version": result.version,
        "previous_version": result.version_before,
        "rows_read": result.rows_read,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "duplicate_documents": result.duplicates,
        "invalid_documents": result.invalid.count,
        "future_documents": result.future.count,
        "files_added": result.files.files_added,
        "bytes_written": result.files.bytes_written,
        "table_files": result.files.files,
        "table_bytes": result.files.table_bytes,
        "seconds": round(result.seconds, 3),
        "exported_at": window.exported_at.isoformat(),
        "read_since": None if window.since is None else window.since.isoformat() + "Z",
        "due_before": window.due.isoformat() + "Z",
        "pool_limit": limit,
    }
    if result.invalid.examples:
        metadata["invalid_examples"] = "; ".join(result.invalid.examples)
    if result.future.examples:
        metadata["future_examples"] = "; ".join(result.future.examples)
    metadata.update(result.maintenance)
    return metadata


@dg.asset(
    key=ASSET_KEY,
    group_name="uploads",
    kinds={"deltalake", "mongodb"},
    pool=POOL,
    description=(
        "Delta table `records` (id, score, created_at, updated_at, exported_at) mirroring the "
        "MongoDB collection uploads.records; incremental MERGE on id by default."
    ),
)
def records_delta(
    context: dg.AssetExecutionContext,
    config: ExportConfig,
    mongodb: MongoResource,
    delta_table: DeltaTableResource,
) -> dg.MaterializeResult[None]:
    limit = pool_limit(context.instance)
    if limit != 1:
        context.log.warning(
            f"concurrency pool {POOL!r} has {'no limit' if limit is None else f'limit {limit}'}"
            " on this Dagster instance: another run writing the table can run at the same "
            "time (one of the two commits then fails); set `concurrency: pools: default_limit:"
            f" 1` in dagster.yaml or run `dagster instance concurrency set {POOL} 1`"
        )
    target = delta_table.target()
    try:
        result = export_records(mongodb.source(), target, config.options(), context.log.info)
    except (SourceError, TargetError) as exc:
        # Retried by the job's retry policy when trying again can help (export_records job).
        raise dg.Failure(description=str(exc), allow_retries=exc.transient) from None
    except MaintenanceConfigError as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    skipped = result.invalid.count + result.future.count
    if skipped:
        context.log.warning(
            f"{skipped} documents were not exported ({result.invalid.count} invalid, "
            f"{result.future.count} dated in the future)"
        )
    return dg.MaterializeResult(metadata=_metadata(result, target.uri, limit))
