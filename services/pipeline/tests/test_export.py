"""Full and incremental exports write exactly what MongoDB holds, and nothing when idle."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

if TYPE_CHECKING:
    from conftest import Harness

RECORD_COLUMNS = ["id", "score", "created_at", "updated_at"]


def log_versions(table: str) -> list[str]:
    return sorted(p.name for p in (Path(table) / "_delta_log").glob("*.json"))


def test_full_run_mirrors_mongodb(harness: Harness) -> None:
    harness.seed(1_500)
    before = harness.now()
    result = harness.run()
    assert result.success
    meta = harness.metadata(result)
    assert (meta["mode"], meta["table_version"], meta["rows_inserted"]) == ("created", 0, 1_500)

    table = harness.delta_frame()
    assert_frame_equal(table.select(RECORD_COLUMNS), harness.mongo_frame())
    assert table.schema["exported_at"] == pl.Datetime("us", "UTC")
    exported = table["exported_at"].unique()
    assert len(exported) == 1
    assert exported[0] >= before.replace(tzinfo=dt.UTC)
    assert harness.checks(result) == {
        "row_count_matches_mongodb": True,
        "documents_exportable": True,
        "ids_present_and_unique": True,
        "schema_as_expected": True,
    }


def test_incremental_run_touches_exactly_the_changed_records(harness: Harness) -> None:
    ids = harness.seed(300)
    assert harness.run().success
    before = harness.delta_frame()

    later = harness.now()  # after the first run's stamps: that run took more than 1 ms
    updated = ids[10:20]
    for record_id in updated:
        harness.collection.update_one(
            {"_id": record_id}, {"$set": {"score": 0.125, "updated_at": later}}
        )
    inserted = harness.seed(5, prefix="new", at=later)

    result = harness.run()
    assert result.success
    meta = harness.metadata(result)
    assert (meta["mode"], meta["rows_inserted"], meta["rows_updated"]) == ("incremental", 5, 10)
    assert meta["table_version"] == 1

    after = harness.delta_frame()
    assert_frame_equal(after.select(RECORD_COLUMNS), harness.mongo_frame())
    # Rows whose export stamp moved are exactly the 15 changed ones; the rest are untouched.
    joined = after.join(before, on="id", how="left", suffix="_before")
    touched = joined.filter(
        pl.col("exported_at_before").is_null()
        | (pl.col("exported_at") != pl.col("exported_at_before"))
    )
    assert sorted(touched["id"]) == sorted(updated + inserted)
    assert all(harness.checks(result).values())


def test_rerun_without_changes_creates_no_version(harness: Harness) -> None:
    now = harness.now()
    harness.seed(150, prefix="old", at=now - dt.timedelta(minutes=10))
    recent = harness.seed(50, prefix="recent", at=now)
    assert harness.run().success
    versions = log_versions(harness.table)

    # The overlap window re-reads documents that are already exported: the MERGE runs with a
    # non-empty source yet must not commit a version.
    for overlap, expected_reads in ((300, 50), (3_600, 200)):
        result = harness.run(overlap_seconds=overlap)
        assert result.success
        meta = harness.metadata(result)
        assert (meta["mode"], meta["table_version"]) == ("unchanged", 0)
        assert meta["rows_read"] == expected_reads
    # Nothing at or after the mark any more: the read is empty and no MERGE runs at all.
    harness.collection.delete_many({"_id": {"$in": recent}})
    meta = harness.metadata(harness.run(overlap_seconds=0))
    assert (meta["mode"], meta["rows_read"], meta["table_version"]) == ("unchanged", 0, 0)

    assert log_versions(harness.table) == versions
    assert DeltaTable(harness.table).version() == 0


def test_full_refresh_rebuilds_the_table_in_one_version(harness: Harness) -> None:
    ids = harness.seed(100)
    assert harness.run().success
    harness.collection.delete_many({"_id": {"$in": ids[:30]}})  # incremental cannot see these

    assert harness.run().success
    assert len(harness.delta_frame()) == 100

    result = harness.run(full_refresh=True)
    assert result.success
    meta = harness.metadata(result)
    assert (meta["mode"], meta["table_version"], meta["previous_version"]) == ("full_refresh", 1, 0)
    assert_frame_equal(harness.delta_frame().select(RECORD_COLUMNS), harness.mongo_frame())
    assert DeltaTable(harness.table).history(1)[0]["operation"] == "WRITE"


def test_invalid_documents_are_left_out_and_reported(harness: Harness) -> None:
    harness.seed(50)
    stamp = harness.now()
    harness.collection.insert_many(
        [
            {"_id": "no-score", "created_at": stamp, "updated_at": stamp},
            {"_id": "text-score", "score": "high", "created_at": stamp, "updated_at": stamp},
            {"_id": 42, "score": 0.5, "created_at": stamp, "updated_at": stamp},
        ]
    )
    result = harness.run()
    assert result.success
    meta = harness.metadata(result)
    assert (meta["rows_read"], meta["rows_inserted"], meta["invalid_documents"]) == (53, 50, 3)
    assert "'no-score': score must be a number" in meta["invalid_examples"]
    assert "42: _id must be a string" in meta["invalid_examples"]
    assert len(harness.delta_frame()) == 50
    # The table is not the whole collection, and the completeness check says so.
    assert harness.checks(result)["row_count_matches_mongodb"] is False


def test_compaction_and_vacuum_when_asked(harness: Harness) -> None:
    harness.seed(100)
    assert harness.run().success
    for round_ in range(3):  # each MERGE that only inserts adds one file
        harness.seed(10, prefix=f"round{round_}")
        assert harness.run().success
    table = DeltaTable(harness.table)
    files_before = len(table.file_uris())
    assert files_before > 1

    result = harness.run(compact=True, vacuum=True, vacuum_retention_hours=0, vacuum_force=True)
    assert result.success
    meta = harness.metadata(result)
    assert meta["compact_files_removed"] == files_before
    assert meta["compact_files_added"] == 1
    assert meta["vacuum_files_removed"] > 0
    table = DeltaTable(harness.table)
    assert meta["table_version"] == table.version() > meta["previous_version"]
    assert len(table.file_uris()) == 1
    on_disk = list(Path(harness.table).glob("*.parquet"))
    assert len(on_disk) == 1
    assert_frame_equal(harness.delta_frame().select(RECORD_COLUMNS), harness.mongo_frame())
