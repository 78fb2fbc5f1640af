"""The asset checks fail when the table is tampered with, and a full refresh repairs it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipeline.assets import records_delta
from pipeline.checks import CHECKS

if TYPE_CHECKING:
    from conftest import Harness


def run_checks(harness: Harness) -> dict[str, bool]:
    """Only the checks (no export), against the table as it is now."""
    result = dg.materialize(
        [records_delta, *CHECKS],
        resources=harness.resources(),
        selection=dg.AssetSelection.all_asset_checks(),
    )
    assert not result.asset_materializations_for_node("records_delta")
    return harness.checks(result)


def duplicate_a_row(table: str) -> None:
    first = DeltaTable(table).to_pyarrow_table().slice(0, 1)
    write_deltalake(table, first, mode="append")


def delete_a_row(table: str) -> None:
    DeltaTable(table).delete("id = 'rec-0000003'")


def score_as_text(table: str) -> None:
    data = DeltaTable(table).to_pyarrow_table()
    index = data.schema.get_field_index("score")
    data = data.set_column(index, "score", data.column("score").cast(pa.string()))
    write_deltalake(table, data, mode="overwrite", schema_mode="overwrite")


def a_null_id(table: str) -> None:
    data = DeltaTable(table).to_pyarrow_table()
    schema = data.schema.set(0, pa.field("id", pa.string(), nullable=True))
    ids = data.column("id").to_pylist()
    ids[0] = None
    data = data.set_column(0, schema.field(0), pa.array(ids, pa.string())).cast(schema)
    write_deltalake(table, data, mode="overwrite", schema_mode="overwrite")


@pytest.mark.parametrize(
    ("tamper", "expected"),
    [
        (duplicate_a_row, {"row_count_matches_mongodb": False, "ids_present_and_unique": False}),
        (delete_a_row, {"row_count_matches_mongodb": False}),
        (score_as_text, {"schema_as_expected": False}),
        (a_null_id, {"ids_present_and_unique": False, "schema_as_expected": False}),
    ],
    ids=["duplicate", "deleted", "schema", "null-id"],
)
def test_tampering_fails_the_checks_and_full_refresh_repairs(
    harness: Harness, tamper: Callable[[str], None], expected: dict[str, bool]
) -> None:
    harness.seed(20)
    assert harness.run().success
    assert run_checks(harness) == dict.fromkeys(
        [
            "row_count_matches_mongodb",
            "documents_exportable",
            "ids_present_and_unique",
            "schema_as_expected",
        ],
        True,
    )

    tamper(harness.table)
    results = run_checks(harness)
    assert {name: results[name] for name in expected} == expected
    assert all(passed for name, passed in results.items() if name not in expected)

    repaired = harness.run(full_refresh=True)
    assert repaired.success
    assert all(harness.checks(repaired).values())
