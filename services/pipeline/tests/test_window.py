"""Issue 16 item 1: a document dated in the future neither freezes nor moves the export.

The next run's window comes from the runs' own clock (the newest exported_at), never from the
documents' timestamps. A document dated more than the tolerated clock skew ahead is left out,
reported by the run and by the documents_exportable check, and exported once its time comes.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from polars.testing import assert_frame_equal

from pipeline.records import MAX_CLOCK_SKEW

if TYPE_CHECKING:
    from conftest import Harness

RECORD_COLUMNS = ["id", "score", "created_at", "updated_at"]


def test_a_document_a_year_ahead_does_not_freeze_later_exports(harness: Harness) -> None:
    ids = harness.seed(30)
    assert harness.run().success
    ahead = harness.now() + dt.timedelta(days=365)
    harness.collection.insert_one(
        {"_id": "from-the-future", "score": 0.5, "created_at": ahead, "updated_at": ahead}
    )
    assert harness.run().success

    # Real writes after the bad one: every one of them must reach the table.
    later = harness.now()
    for record_id in ids[:3]:
        harness.collection.update_one(
            {"_id": record_id}, {"$set": {"score": 0.25, "updated_at": later}}
        )
    harness.seed(4, prefix="after", at=later)
    result = harness.run()
    assert result.success
    table = harness.delta_frame().select(RECORD_COLUMNS)
    assert_frame_equal(table, harness.mongo_frame(exclude={"from-the-future"}))
    meta = harness.metadata(result)
    assert (meta["mode"], meta["rows_inserted"], meta["rows_updated"]) == ("incremental", 4, 3)
    # The window starts before the real writes, not a year ahead.
    read_since = dt.datetime.fromisoformat(meta["read_since"]).replace(tzinfo=None)
    assert read_since < later

    checks = harness.checks(result)
    assert checks["row_count_matches_mongodb"] is True  # created a year ahead: not due yet
    assert checks["documents_exportable"] is False
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "documents_exportable"
    ]
    assert check.metadata["future_documents"].value == 1
    assert "'from-the-future': dated" in str(check.metadata["future_examples"].value)


def test_full_refresh_reports_future_documents_and_exports_them_in_time(
    harness: Harness,
) -> None:
    harness.seed(10)
    now = harness.now()
    skewed = now + MAX_CLOCK_SKEW / 2  # a writer's clock a little ahead: tolerated
    harness.collection.insert_many(
        [
            {"_id": "skewed", "score": 0.1, "created_at": skewed, "updated_at": skewed},
            {
                "_id": "updated-ahead",
                "score": 0.2,
                "created_at": now,
                "updated_at": now + dt.timedelta(hours=2),
            },
        ]
    )
    result = harness.run()
    assert result.success
    meta = harness.metadata(result)
    assert (meta["rows_inserted"], meta["future_documents"]) == (11, 1)
    assert meta["future_examples"].startswith("'updated-ahead': dated ")
    assert "skewed" in set(harness.delta_frame()["id"])
    # Created before the run, not exported: the completeness check says so as well.
    assert harness.checks(result)["row_count_matches_mongodb"] is False

    # Its time comes (here: the document is corrected) and the next run exports it.
    harness.collection.update_one({"_id": "updated-ahead"}, {"$set": {"updated_at": harness.now()}})
    result = harness.run()
    assert result.success
    assert harness.metadata(result)["rows_inserted"] == 1
    assert_frame_equal(harness.delta_frame().select(RECORD_COLUMNS), harness.mongo_frame())
    assert all(harness.checks(result).values())
