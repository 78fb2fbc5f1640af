"""Asset checks on the Delta table: complete, ids present and unique, schema as designed, and
every MongoDB document exportable.

They read the table with delta-rs and pyarrow directly (not through the export code) and count
MongoDB documents with the record's rule as a MongoDB query (``records.VALID_QUERY``), so a
document the export skipped is seen by the checks whichever run skipped it. They run after
every materialization of ``records_delta``.
"""
# No `from __future__ import annotations`: Dagster reads the parameter annotations at runtime.

import datetime as dt
import json

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from bson.errors import BSONError
from deltalake import DeltaTable
from pymongo.collection import Collection
from pymongo.errors import PyMongoError

from pipeline import delta, mongo, records
from pipeline.assets import ASSET_KEY
from pipeline.resources import DeltaTableResource, MongoResource
from pipeline.schema import DELTA_FIELDS, EXAMPLES, TIMESTAMP, utc_now_ms


def _table(resource: DeltaTableResource) -> DeltaTable | None:
    try:
        return delta.open_table(resource.target())
    except delta.TargetError:
        return None


def _missing(uri: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=False, description=f"no Delta table at {uri}")


def _last_export_start(
    context: dg.AssetCheckExecutionContext, table: DeltaTable
) -> dt.datetime | None:
    """When the last export started: from its materialization (also when it wrote nothing),
    else the table's newest exported_at."""
    event = context.instance.get_latest_materialization_event(ASSET_KEY)
    materialization = None if event is None else event.asset_materialization
    value = None if materialization is None else materialization.metadata.get("exported_at")
    if value is not None and isinstance(value.value, str):
        return dt.datetime.fromisoformat(value.value)
    return delta.export_mark(table)


@dg.asset_check(
    asset=ASSET_KEY,
    description=(
        "Every MongoDB document created before the last export started (the newest "
        "exported_at), and every document without a usable created_at, is a row of the table, "
        "and the table holds no other row created before then. Documents created later are "
        "the next run's work. Skipped documents (invalid, dated in the future) count as "
        "missing: see documents_exportable for which."
    ),
)
def row_count_matches_mongodb(
    context: dg.AssetCheckExecutionContext, mongodb: MongoResource, delta_table: DeltaTableResource
) -> dg.AssetCheckResult:
    table = _table(delta_table)
    if table is None:
        return _missing(delta_table.uri)
    try:
        started = _last_export_start(context, table)
        dataset = table.to_pyarrow_dataset()
        if started is None:
            rows = dataset.count_rows()
        else:
            before = ds.field("created_at") < pa.scalar(started, TIMESTAMP)
            rows = dataset.count_rows(filter=before)
    except Exception as exc:  # a tampered table may lack the columns
        return dg.AssetCheckResult(passed=False, description=f"cannot read created_at: {exc}")
    query: mongo.Document = {}
    if started is not None:
        stamp = started.astimezone(dt.UTC).replace(tzinfo=None)
        created_before = {"created_at": {"$gte": records.MIN_DATE, "$lt": stamp}}
        query = {"$or": [created_before, records.NO_CREATED_AT_QUERY]}
    source = mongodb.source()
    try:
        with mongo.open_collection(source) as collection:
            expected = mongo.count(collection, query, source.hosts)
            total = collection.estimated_document_count()
    except (mongo.SourceError, PyMongoError) as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc))
    when = "" if started is None else f" created before {started.isoformat()}"
    return dg.AssetCheckResult(
        passed=rows == expected,
        description=f"Delta rows{when}: {rows}; MongoDB documents{when}: {expected}",
        metadata={
            "delta_rows": rows,
            "delta_rows_total": table.count(),
            "mongodb_documents": expected,
            "mongodb_documents_total": total,
            "created_before": None if started is None else started.isoformat(),
            "table_version": table.version(),
        },
    )


def _examples(
    collection: Collection[mongo.Document], query: mongo.Document, hosts: str, explain: bool
) -> list[str]:
    """Up to EXAMPLES documents matching ``query``, each with why it is skipped."""
    shown = []
    try:
        documents = list(collection.find(query, records.PROJECTION, limit=EXAMPLES))
    except BSONError:  # undecodable: name them by id only
        ids = mongo.example_ids(collection, query, hosts, EXAMPLES)
        return [f"{records.shown_id(i)}: cannot be decoded" for i in ids]
    except PyMongoError as exc:
        raise mongo.SourceError(str(exc), transient=mongo.is_transient(exc)) from None
    for document in documents:
        if explain:
            reason = records.problem(document) or "breaks the record's rule"
        else:
            stamp = max(document["created_at"], document["updated_at"])
            reason = f"dated {stamp.isoformat()}Z"
        shown.append(f"{records.shown_id(document.get('_id'))}: {reason}")
    return shown


@dg.asset_check(
    asset=ASSET_KEY,
    description=(
        "Every MongoDB document can become a row: none breaks the record's rule (id a string "
        "of 1..256 characters, score a number in [0, 1], created_at and updated_at dates) and "
        "none is dated more than the tolerated clock skew in the future. The export skips "
        "such documents; this check names them (count and examples)."
    ),
)
def documents_exportable(mongodb: MongoResource) -> dg.AssetCheckResult:
    due = utc_now_ms().replace(tzinfo=None) + records.MAX_CLOCK_SKEW
    source = mongodb.source()
    try:
        with mongo.open_collection(source) as collection:
            # One scan when all is well (the usual case); the split only when something is off.
            invalid = future = 0
            if mongo.count(collection, records.skipped_query(due), source.hosts):
                invalid = mongo.count(collection, records.INVALID_QUERY, source.hosts)
                future = mongo.count(collection, records.future_query(due), source.hosts)
            invalid_examples = (
                _examples(collection, records.INVALID_QUERY, source.hosts, explain=True)
                if invalid
                else []
            )
            future_examples = (
                _examples(collection, records.future_query(due), source.hosts, explain=False)
                if future
                else []
            )
    except mongo.SourceError as exc:
        return dg.AssetCheckResult(passed=False, description=str(exc))
    parts = []
    if invalid:
        parts.append(f"{invalid} invalid ({'; '.join(invalid_examples)})")
    if future:
        parts.append(f"{future} dated after {due.isoformat()}Z ({'; '.join(future_examples)})")
    return dg.AssetCheckResult(
        passed=not parts,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "every document can be exported"
            if not parts
            else "documents the export skips: " + ", ".join(parts)
        ),
        metadata={
            "invalid_documents": invalid,
            "future_documents": future,
            "invalid_examples": "; ".join(invalid_examples),
            "future_examples": "; ".join(future_examples),
            "future_after": due.isoformat() + "Z",
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


CHECKS = [
    row_count_matches_mongodb,
    documents_exportable,
    ids_present_and_unique,
    schema_as_expected,
]
