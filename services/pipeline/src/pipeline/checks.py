"""Asset checks on the Delta table: complete, ids present and unique, schema as designed.
# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

They read the table with delta-rs and pyarrow directly (not through the export code) and run
after every materialization of ``records_delta``.
"""

import json

import dagster as dg
import pyarrow.compute as pc
from deltalake import DeltaTable

from pipeline import delta, mongo
from pipeline.assets import ASSET_KEY
from pipeline.resources import DeltaTableResource, MongoResource
from pipeline.schema import DELTA_FIELDS


def _table(resource: DeltaTableResource) -> DeltaTable | None:
    try:
        return delta.open_table(resource.target())
    except delta.TargetError:
        return None


def _missing(uri: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description=f"no Delta table at {uri}")


@dg.asset_check(
    asset=ASSET_KEY,
    description=(
        "The table has as many rows as MongoDB has documents created before the last export "
        "that wrote rows started (the newest exported_at). Documents created later are the "
        "next run's work; when nothing is being written this is the whole collection."
    ),
)
def row_count_matches_mongodb(
    mongodb: MongoResource, delta_table: DeltaTableResource
) -> dg.AssetCheckResult:
    table = _table(delta_table)
    if table is None:
        return _missing(delta_table.uri)
    rows = table.count()
    try:
        exported = delta.column_max(table, "exported_at")
    except Exception as exc:  # a tampered table may lack the column
        return dg.AssetCheckResult(passed=False, description=f"cannot read exported_at: {exc}")
    source = mongodb.source()
    query: mongo.Document = {} if exported is None else {"created_at": {"$lte": exported}}
    try:
        with mongo.open_collection(source) as collection:
            expected = mongo.count(collection, query, source.hosts)
            total = mongo.count(collection, {}, source.hosts)
    except mongo.SourceError as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc))
    return dg.AssetCheckResult(
        passed=rows == expected,
        description=f"Delta rows {rows}, MongoDB documents {expected}",
        metadata={
            "delta_rows": rows,
            "mongodb_documents": expected,
            "mongodb_documents_total": total,
            "created_up_to": None if exported is None else exported.isoformat(),
            "table_version": table.version(),
        },
    )


@dg.asset_check(asset=ASSET_KEY, description="Every row has an id and no id appears twice.")
def ids_present_and_unique(delta_table: DeltaTableResource) -> dg.AssetCheckResult:
    table = _table(delta_table)
    if table is None:
        return _missing(delta_table.uri)
    try:
        ids = table.to_pyarrow_dataset().to_table(columns=["id"]).column("id")
    except Exception as exc:  # a tampered table may lack the column or be unreadable
        return dg.AssetCheckResult(passed=False, description=f"cannot read column id: {exc}")
    nulls = ids.null_count
    duplicates = len(ids) - nulls - pc.count_distinct(ids, mode="only_valid").as_py()
    return dg.AssetCheckResult(
        passed=nulls == 0 and duplicates == 0,
        description=f"{nulls} null ids, {duplicates} duplicate rows",
        metadata={"rows": len(ids), "null_ids": nulls, "duplicate_ids": duplicates},
    )


@dg.asset_check(asset=ASSET_KEY, description="The table's schema is exactly the designed one.")
def schema_as_expected(delta_table: DeltaTableResource) -> dg.AssetCheckResult:
    table = _table(delta_table)
    if table is None:
        return _missing(delta_table.uri)
    fields = json.loads(table.schema().to_json())["fields"]
    actual = tuple((f["name"], f["type"], bool(f["nullable"])) for f in fields)

    def spell(columns: tuple[tuple[str, object, bool], ...]) -> str:
        return ", ".join(f"{n} {t}{'' if nullable else ' not null'}" for n, t, nullable in columns)

    passed = actual == DELTA_FIELDS
    return dg.AssetCheckResult(
        passed=passed,
        description=(
            f"{len(actual)} columns as designed"
            if passed
            else f"expected ({spell(DELTA_FIELDS)}), found ({spell(actual)})"
        ),
        metadata={"schema": spell(actual)},
    )


CHECKS = [row_count_matches_mongodb, ids_present_and_unique, schema_as_expected]
