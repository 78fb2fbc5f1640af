"""Issue 16 item 4: "checks passed" means the table holds every record MongoDB has.

Before, row_count_matches_mongodb counted only documents with a valid created_at up to the
newest exported_at: a skipped document without a usable created_at, or one skipped by a run
that wrote nothing, was not counted, and the check passed with a record missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from polars.testing import assert_frame_equal

if TYPE_CHECKING:
    import dagster as dg
    from conftest import Harness

RECORD_COLUMNS = ["id", "score", "created_at", "updated_at"]


def check_metadata(result: dg.ExecuteInProcessResult, name: str) -> dict[str, object]:
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return {key: value.value for key, value in check.metadata.items()}


def test_documents_without_a_usable_created_at_fail_the_checks(harness: Harness) -> None:
    harness.seed(20)
    stamp = harness.now()
    harness.collection.insert_many(
        [
            {"_id": "no-created-at", "score": 0.5, "updated_at": stamp},
            {
                "_id": "text-created-at",
                "score": 0.5,
                "created_at": "yesterday",
                "updated_at": stamp,
            },
        ]
    )
    result = harness.run()
    assert result.success
    assert harness.metadata(result)["invalid_documents"] == 2
    checks = harness.checks(result)
    assert checks["row_count_matches_mongodb"] is False, "passed with two records missing"
    assert checks["documents_exportable"] is False
    count = check_metadata(result, "row_count_matches_mongodb")
    assert (count["delta_rows"], count["mongodb_documents"]) == (20, 22)
    skipped = check_metadata(result, "documents_exportable")
    assert skipped["invalid_documents"] == 2
    assert "'no-created-at': created_at must be a date" in str(skipped["invalid_examples"])
    assert "'text-created-at': created_at must be a date" in str(skipped["invalid_examples"])

    # Repaired in MongoDB, they are exported by the next run and every check passes.
    harness.collection.update_many(
        {"_id": {"$in": ["no-created-at", "text-created-at"]}},
        {"$set": {"created_at": stamp, "updated_at": harness.now()}},
    )
    result = harness.run()
    assert result.success
    assert harness.metadata(result)["rows_inserted"] == 2
    assert all(harness.checks(result).values())
    assert_frame_equal(harness.delta_frame().select(RECORD_COLUMNS), harness.mongo_frame())


def test_a_run_that_writes_nothing_still_counts_what_it_skipped(harness: Harness) -> None:
    harness.seed(15)
    assert harness.run().success
    stamp = harness.now()
    harness.collection.insert_one(
        {"_id": "bad-score", "score": "high", "created_at": stamp, "updated_at": stamp}
    )
    result = harness.run()  # reads only the bad document: nothing to write, no new version
    assert result.success
    meta = harness.metadata(result)
    assert (meta["mode"], meta["invalid_documents"]) == ("unchanged", 1)
    checks = harness.checks(result)
    assert checks["row_count_matches_mongodb"] is False
    assert checks["documents_exportable"] is False
    assert check_metadata(result, "row_count_matches_mongodb")["mongodb_documents"] == 16
