"""Issue 16 item 3: no document poisons a run; each bad one is skipped and named.

Before: an integer score above 2^53 escaped as pyarrow's ArrowInvalid (no document named) and
failed every later run; a BSON date outside the years 1..9999 escaped as bson's InvalidBSON;
``score: true`` was written as 1.0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bson import DatetimeMS, Int64
from bson.codec_options import CodecOptions, DatetimeConversion
from polars.testing import assert_frame_equal

from pipeline import records

if TYPE_CHECKING:
    from conftest import Harness

RECORD_COLUMNS = ["id", "score", "created_at", "updated_at"]
FAR_FUTURE = DatetimeMS(2**62)  # about 146 million years from now: no Python datetime
FAR_PAST = DatetimeMS(-(2**62))


def bad_documents(harness: Harness, prefix: str) -> dict[str, dict[str, Any]]:
    stamp = harness.now()
    good = {"score": 0.5, "created_at": stamp, "updated_at": stamp}
    return {
        f"{prefix}-huge-int": {**good, "score": Int64(2**60)},
        f"{prefix}-bool": {**good, "score": True},
        f"{prefix}-negative": {**good, "score": -0.25},
        f"{prefix}-date-beyond": {**good, "updated_at": FAR_FUTURE},
        f"{prefix}-date-before": {**good, "created_at": FAR_PAST},
    }


def insert(harness: Harness, documents: dict[str, dict[str, Any]]) -> None:
    harness.collection.insert_many([{"_id": key, **value} for key, value in documents.items()])


def test_bad_documents_are_skipped_named_and_later_runs_go_on(harness: Harness) -> None:
    harness.seed(30)
    first = bad_documents(harness, "first")
    insert(harness, first)
    result = harness.run()
    assert result.success, "a bad document failed the whole run"
    meta = harness.metadata(result)
    assert (meta["rows_read"], meta["rows_inserted"], meta["invalid_documents"]) == (35, 30, 5)
    examples = meta["invalid_examples"]
    for key in first:
        assert f"'{key}': " in examples
    assert "'first-huge-int': score must be a number in [0, 1], got 1152921504606846976" in examples
    assert "'first-bool': score must be a number in [0, 1], got True" in examples
    assert "'first-date-beyond': updated_at must be a date in the years 1..9999" in examples

    # The next runs read the bad documents again in their window (all but those updated
    # beyond the years 1..9999, which lie past the window), skip them and export the rest.
    second = bad_documents(harness, "second")
    insert(harness, second)
    harness.seed(3, prefix="good", at=harness.now())
    for expected_inserts in (3, 0):
        result = harness.run()
        assert result.success
        meta = harness.metadata(result)
        assert (meta["rows_read"], meta["rows_inserted"]) == (41, expected_inserts)
        assert meta["invalid_documents"] == 8

    table = harness.delta_frame().select(RECORD_COLUMNS)
    assert len(table) == 33
    assert_frame_equal(table, harness.mongo_frame(exclude={*first, *second}))
    checks = harness.checks(result)
    assert checks["row_count_matches_mongodb"] is False  # 10 records are not in the table
    assert checks["documents_exportable"] is False
    (check,) = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "documents_exportable"
    ]
    assert check.metadata["invalid_documents"].value == 10


def test_the_rule_in_python_and_as_a_query_agree(harness: Harness) -> None:
    """records.problem and records.VALID_QUERY give every document the same verdict."""
    stamp = harness.now()
    good = {"score": 0.5, "created_at": stamp, "updated_at": stamp}
    documents: list[dict[str, Any]] = [
        {"_id": "valid", **good},
        {"_id": "zero", **good, "score": 0},
        {"_id": "one-long", **good, "score": Int64(1)},
        {"_id": "score-one", **good, "score": 1.0},
        {"_id": "above", **good, "score": 1.0000001},
        {"_id": "text", **good, "score": "0.5"},
        {"_id": "missing-score", "created_at": stamp, "updated_at": stamp},
        {"_id": "null-score", **good, "score": None},
        {"_id": "missing-updated", "score": 0.5, "created_at": stamp},
        {"_id": "text-date", **good, "created_at": "2026-11-01"},
        {"_id": 7, **good},
        {"_id": "", **good},
        *({"_id": key, **value} for key, value in bad_documents(harness, "bad").items()),
    ]
    harness.collection.insert_many(documents)
    raw = harness.client.get_database(
        harness.database,
        codec_options=CodecOptions(datetime_conversion=DatetimeConversion.DATETIME_AUTO),
    )["records"]
    by_python = {str(d["_id"]) for d in raw.find() if records.problem(d) is None}
    by_query = {str(d["_id"]) for d in raw.find(records.VALID_QUERY)}
    assert by_python == by_query == {"valid", "zero", "one-long", "score-one"}
    assert raw.count_documents(records.INVALID_QUERY) == len(documents) - 4
