"""The ``records_delta`` asset: the Delta table ``records`` exported from MongoDB."""
# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import datetime as dt
from typing import Any

import dagster as dg
from pydantic import Field

from pipeline.delta import TargetError
from pipeline.export import ExportOptions, ExportResult, export_records
from pipeline.mongo import SourceError
from pipeline.resources import DeltaTableResource, MongoResource

ASSET_KEY = dg.AssetKey("records_delta")


class ExportConfig(dg.Config):
    """Run configuration of one export; the defaults are what the schedule runs."""

    full_refresh: bool = Field(
        default=False, description="Rebuild the table from every document (one overwrite)"
    )
    overlap_seconds: int = Field(
        default=300,
        ge=0,
        description="Re-read documents this much older than the table's newest updated_at",
    )
    compact: bool = Field(default=False, description="Compact small files after writing")
    vacuum: bool = Field(default=False, description="Delete files unused for the retention")
    vacuum_retention_hours: int = Field(default=168, ge=0, description="Vacuum retention")

    def options(self) -> ExportOptions:
        return ExportOptions(
            full_refresh=self.full_refresh,
            overlap=dt.timedelta(seconds=self.overlap_seconds),
            compact=self.compact,
            vacuum=self.vacuum,
            vacuum_retention_hours=self.vacuum_retention_hours,
        )


def _metadata(result: ExportResult, uri: str) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "mode": result.mode,
        "table_uri": uri,
        "table_version": result.version,
        "previous_version": result.version_before,
        "rows_read": result.rows_read,
        "rows_inserted": result.rows_inserted,
        "rows_updated": result.rows_updated,
        "invalid_documents": result.invalid.count,
        "seconds": round(result.seconds, 3),
        "read_since": None if result.since is None else result.since.isoformat(),
    }
    if result.invalid.examples:
        metadata["invalid_examples"] = "; ".join(result.invalid.examples)
    metadata.update(result.maintenance)
    return metadata


@dg.asset(
    key=ASSET_KEY,
    group_name="uploads",
    kinds={"deltalake", "mongodb"},
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
    target = delta_table.target()
    try:
        result = export_records(mongodb.source(), target, config.options(), context.log.info)
    except (SourceError, TargetError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=True) from None
    if result.invalid.count:
        context.log.warning(f"{result.invalid.count} documents were not exported (invalid)")
    return dg.MaterializeResult(metadata=_metadata(result, target.uri))
