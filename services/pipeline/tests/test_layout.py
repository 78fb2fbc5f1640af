"""Issue 16 item 9: an incremental run rewrites a small part of the table, not all of it.

The table is laid out in files of at most ``target_file_size`` bytes (1 MiB by default, stored
in the table), each holding records created in one stretch of time: the full export reads in
natural (insertion) order. delta-rs rewrites only the files holding a changed row, so new
records and updates of recent ones touch the newest files. What a commit wrote is read from
the Delta log's JSON directly.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from pipeline.delta import DEFAULT_TARGET_FILE_SIZE
from pipeline.resources import DeltaTableResource
from pipeline.settings import load

if TYPE_CHECKING:
    from conftest import Harness

RECORD_COLUMNS = ["id", "score", "created_at", "updated_at"]
FILE_SIZE = 64 * 1024  # small files, so that a test-sized table has many
BATCHES = 20
PER_BATCH = 1_000


def test_default_layout_is_stored_in_the_table(harness: Harness) -> None:
    assert load({}).delta_target_file_size == DEFAULT_TARGET_FILE_SIZE == 1024 * 1024
    assert DeltaTableResource(uri=harness.table).target_file_size == DEFAULT_TARGET_FILE_SIZE
    harness.seed(10)
    assert harness.run().success
    configuration = DeltaTable(harness.table).metadata().configuration
    assert configuration["delta.targetFileSize"] == str(DEFAULT_TARGET_FILE_SIZE)


def test_new_and_recently_updated_records_rewrite_only_the_newest_files(
    harness: Harness,
) -> None:
    start = harness.now() - dt.timedelta(days=BATCHES)
    ids = []
    for day in range(BATCHES):  # inserted in creation order, one day apart
        ids += harness.seed(PER_BATCH, prefix=f"day{day:02d}", at=start + dt.timedelta(days=day))
    resources = harness.resources(target_file_size=FILE_SIZE)
    assert harness.run(resources).success
    table = DeltaTable(harness.table)
    files = len(table.file_uris())
    assert files >= 5, f"only {files} files"

    # 1% of the records, the most recently created ones, change; 1% are new.
    later = harness.now()
    for record_id in ids[-len(ids) // 100 :]:
        harness.collection.update_one(
            {"_id": record_id}, {"$set": {"score": 0.5, "updated_at": later}}
        )
    harness.seed(len(ids) // 100, prefix="new", at=later)
    result = harness.run(resources)
    assert result.success
    actions = harness.commit_actions(DeltaTable(harness.table).version())
    added = [a["add"] for a in actions if "add" in a]
    removed = [a["remove"] for a in actions if "remove" in a]
    written = sum(a["size"] for a in added)
    table_bytes = sum(f["size"] for f in harness.live_files().values())
    assert len(removed) <= 2, f"{len(removed)} of {files} files rewritten"
    assert written < table_bytes / 4, f"wrote {written} bytes of a {table_bytes}-byte table"
    meta = harness.metadata(result)
    assert (meta["rows_inserted"], meta["rows_updated"]) == (200, 200)
    assert (meta["bytes_written"], meta["table_bytes"]) == (written, table_bytes)
    assert_frame_equal(harness.delta_frame().select(RECORD_COLUMNS), harness.mongo_frame())
    assert all(harness.checks(result).values())
