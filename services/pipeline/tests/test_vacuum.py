"""Issue 16 item 8: the vacuum removes crash debris, and refuses an unsafe retention.

Debris, as real runs leave it: the data files of a writer whose commit lost to a concurrent
one (made here with two delta-rs writers on one version), and the object store's staging files
(``<file>#<n>``) of a run killed while a file was being written. Before, the lite vacuum
removed neither, though the docs said it removed stray files.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pytest
from deltalake import DeltaTable
from deltalake.exceptions import CommitFailedError
from polars.testing import assert_frame_equal

if TYPE_CHECKING:
    from conftest import Harness

RECORD_COLUMNS = ["id", "score", "created_at", "updated_at"]
HOURS = 3600


def on_disk(table: str) -> set[str]:
    return {p.name for p in Path(table).iterdir() if p.is_file()}


def age(path: Path, hours: float) -> None:
    stamp = time.time() - hours * HOURS
    os.utime(path, (stamp, stamp))


def losing_writer(harness: Harness) -> set[str]:
    """Two writers MERGE the same row from one version: the second commit fails. Returns the
    data files the loser wrote, which no version references."""
    table = harness.table
    first, second = DeltaTable(table), DeltaTable(table)
    row = first.to_pyarrow_table().slice(0, 1)
    index = row.schema.get_field_index("score")
    before = on_disk(table)
    for writer, score in ((first, 0.75), (second, 0.25)):
        source = row.set_column(index, "score", pa.array([score]))
        merger = writer.merge(source, "t.id = s.id", source_alias="s", target_alias="t")
        if writer is first:
            merger.when_matched_update_all().execute()
            continue
        with pytest.raises(CommitFailedError):
            merger.when_matched_update_all().execute()
    return on_disk(table) - before - set(harness.live_files())


def test_vacuum_removes_debris_older_than_the_retention(harness: Harness) -> None:
    harness.seed(200)
    assert harness.run().success
    orphans = losing_writer(harness)
    assert orphans, "the losing writer left no data file"
    another = sorted(orphans)[0]
    old_orphan = f"old-{another}"
    shutil.copy(Path(harness.table) / another, Path(harness.table) / old_orphan)
    age(Path(harness.table) / old_orphan, 3)
    staging_old, staging_new = f"{another}#1", f"{another}#2"
    for name in (staging_old, staging_new):
        shutil.copy(Path(harness.table) / another, Path(harness.table) / name)
    age(Path(harness.table) / staging_old, 3)

    # Retention 1 h: the debris of three hours ago goes; what is younger (it could belong to
    # a run still writing) stays.
    result = harness.run(vacuum=True, vacuum_retention_hours=1, vacuum_force=True)
    assert result.success
    files = on_disk(harness.table)
    assert old_orphan not in files
    assert staging_old not in files
    assert staging_new in files
    assert orphans <= files
    assert harness.metadata(result)["vacuum_staging_files_removed"] == 1

    # Retention 0 (forced): nothing but the current version's files is left.
    result = harness.run(vacuum=True, vacuum_retention_hours=0, vacuum_force=True)
    assert result.success
    assert {f for f in on_disk(harness.table) if not f.startswith(".")} == set(harness.live_files())
    assert harness.metadata(result)["vacuum_files_removed"] >= len(orphans)
    assert_frame_equal(harness.delta_frame().select(RECORD_COLUMNS), harness.mongo_frame())
    assert all(harness.checks(result).values())


def test_a_short_retention_is_refused_unless_forced(harness: Harness) -> None:
    harness.seed(20)
    assert harness.run().success
    version = DeltaTable(harness.table).version()
    result = harness.run(vacuum=True, vacuum_retention_hours=0)
    message = harness.failure(result)
    assert "vacuum_retention_hours=0 is below 168 hours" in message
    assert "vacuum_force: true" in message
    assert DeltaTable(harness.table).version() == version
    # The default retention needs no force.
    assert harness.run(vacuum=True).success
