"""Issue 16 item 2: an id read twice never becomes two rows, and never fails a run.

MongoDB can return a document twice when it is updated while an index scan on updated_at
runs; FerretDB cannot be made to, so these tests hand the MERGE and the full write the
documents such a scan returns (the same id twice, an old and a new version).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pipeline import delta, export
from pipeline.mongo import SourceError
from pipeline.schema import RECORD_SCHEMA, Conversion, Undecodable
from pipeline.window import Window

T0 = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)


def rows(*records: tuple[str, float, int]) -> pa.RecordBatch:
    """Rows (id, score, minutes after T0 of updated_at), created at T0, exported at T0 + 1 h."""
    return pa.RecordBatch.from_pylist(
        [
            {
                "id": record_id,
                "score": score,
                "created_at": T0,
                "updated_at": T0 + dt.timedelta(minutes=minutes),
                "exported_at": T0 + dt.timedelta(hours=1),
            }
            for record_id, score, minutes in records
        ],
        schema=RECORD_SCHEMA,
    )


def test_merge_source_with_an_id_twice_keeps_the_newest_once(tmp_path: Path) -> None:
    target = delta.DeltaTarget(str(tmp_path / "records"))
    delta.overwrite(target, iter([rows(("a", 0.1, 0))]))

    # "b" is new and read twice; "a" exists and is read twice (old version last).
    source = rows(("b", 0.2, 5), ("a", 0.3, 9), ("b", 0.4, 7), ("a", 0.5, 8))
    table = DeltaTable(target.uri)
    metrics = delta.merge(table, iter([source]))

    frame = pl.read_delta(target.uri).sort("id")
    assert frame["id"].to_list() == ["a", "b"]
    assert frame["score"].to_list() == [0.3, 0.4]  # the newest updated_at of each
    assert (metrics["num_target_rows_inserted"], metrics["num_target_rows_updated"]) == (1, 1)
    assert metrics["num_source_duplicates"] == 2


def test_full_read_with_an_id_twice_commits_nothing(tmp_path: Path) -> None:
    target = delta.DeltaTarget(str(tmp_path / "records"))
    started = T0 + dt.timedelta(hours=1)
    document: dict[str, Any] = {"score": 0.5, "created_at": T0.replace(tzinfo=None)}
    batches: Iterator[list[dict[str, Any] | Undecodable]] = iter(
        [
            [{"_id": "x", **document, "updated_at": T0.replace(tzinfo=None)}],
            [{"_id": "y", **document, "updated_at": T0.replace(tzinfo=None)}],
            [{"_id": "x", **document, "updated_at": started.replace(tzinfo=None)}],
        ]
    )
    window = Window("created", started, None)
    stream = export._Stream(batches, Conversion(started, window.due), lambda _: None)
    with pytest.raises(SourceError, match="returned 1 documents twice") as caught:
        export._overwrite(window, target, stream)
    assert caught.value.transient  # the job's retry policy runs it again
    assert delta.open_table(target) is None  # no commit: no table
