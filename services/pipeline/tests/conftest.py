"""Shared fixtures: a private database on the session's MongoDB and a temporary table path.

The tests write through Dagster (``materialize``) and read the results back with polars and
pymongo, never through the pipeline's own reading code.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import polars as pl
import pytest
from bson.codec_options import DatetimeConversion
from pymongo import MongoClient
from pymongo.collection import Collection

from pipeline.assets import ExportConfig, records_delta
from pipeline.checks import CHECKS
from pipeline.resources import DeltaTableResource, MongoResource

Document = dict[str, Any]
# A server that stops answering fails the test within three minutes instead of hanging it.
# Not less: FerretDB evaluates every filter in Go, and on two shared cores one count over the
# crash test's 102,000 documents (the checks run two) was seen taking 46 s.
SOCKET_TIMEOUT_MS = 180_000


def now_ms() -> dt.datetime:
    """Naive UTC now at millisecond precision, as MongoDB stores it."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass
class Harness:
    """One test's MongoDB database and Delta table, and ways to run and inspect the export."""

    uri: str
    database: str
    table: str
    client: MongoClient[Document]

    @property
    def collection(self) -> Collection[Document]:
        return self.client[self.database]["records"]

    def seed(self, count: int, prefix: str = "rec", at: dt.datetime | None = None) -> list[str]:
        stamp = at or now_ms()
        ids = [f"{prefix}-{i:07d}" for i in range(count)]
        for start in range(0, count, 5_000):
            self.collection.insert_many(
                [
                    {"_id": i, "score": random.random(), "created_at": stamp, "updated_at": stamp}
                    for i in ids[start : start + 5_000]
                ]
            )
        return ids

    def resources(self, **delta: Any) -> dict[str, Any]:
        return {
            "mongodb": MongoResource(
                uri=self.uri,
                database=self.database,
                batch_size=1_000,
                socket_timeout_ms=SOCKET_TIMEOUT_MS,
            ),
            "delta_table": DeltaTableResource(uri=self.table, **delta),
        }

    def run(
        self,
        resources: dict[str, Any] | None = None,
        instance: dg.DagsterInstance | None = None,
        **config: Any,
    ) -> dg.ExecuteInProcessResult:
        return dg.materialize(
            [records_delta, *CHECKS],
            resources=resources or self.resources(),
            run_config=dg.RunConfig({"records_delta": ExportConfig(**config)}),
            instance=instance,
            raise_on_error=False,
        )

    def mongo_frame(self, exclude: set[str] | None = None) -> pl.DataFrame:
        docs = [d for d in self.collection.find() if d["_id"] not in (exclude or set())]
        frame = pl.DataFrame(
            {
                "id": [d["_id"] for d in docs],
                "score": [float(d["score"]) for d in docs],
                "created_at": [d["created_at"] for d in docs],
                "updated_at": [d["updated_at"] for d in docs],
            },
            schema={
                "id": pl.String,
                "score": pl.Float64,
                "created_at": pl.Datetime("us"),
                "updated_at": pl.Datetime("us"),
            },
        )
        return frame.with_columns(
            pl.col("created_at", "updated_at").dt.replace_time_zone("UTC")
        ).sort("id")

    def commit_actions(self, version: int) -> list[dict[str, Any]]:
        """The actions of one commit, read from the Delta log's JSON (not through delta-rs)."""
        path = Path(self.table) / "_delta_log" / f"{version:020d}.json"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def live_files(self) -> dict[str, dict[str, Any]]:
        """The current version's add actions by path, replayed from the log's JSON."""
        files: dict[str, dict[str, Any]] = {}
        for path in sorted((Path(self.table) / "_delta_log").glob("*.json")):
            for line in path.read_text().splitlines():
                action = json.loads(line)
                if "add" in action:
                    files[action["add"]["path"]] = action["add"]
                if "remove" in action:
                    files.pop(action["remove"]["path"], None)
        return files

    def delta_frame(self, **storage: Any) -> pl.DataFrame:
        return pl.read_delta(self.table, **storage).sort("id")

    @staticmethod
    def now() -> dt.datetime:
        return now_ms()

    @staticmethod
    def metadata(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
        """The materialization's metadata (the run must have materialized the asset)."""
        (event,) = result.asset_materializations_for_node("records_delta")
        return {key: value.value for key, value in event.metadata.items()}

    @staticmethod
    def checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
        return {e.check_name: e.passed for e in result.get_asset_check_evaluations()}

    @staticmethod
    def failure(result: dg.ExecuteInProcessResult) -> str:
        """The description of the run's one step failure."""
        assert not result.success
        (event,) = [e for e in result.all_events if e.is_step_failure]
        data = event.step_failure_data
        assert data.user_failure_data is not None, data.error
        return data.user_failure_data.description or ""


@pytest.fixture
def harness(mongodb_uri: str, tmp_path: Path) -> Iterator[Harness]:
    database = f"pipeline_{uuid.uuid4().hex[:12]}"
    client: MongoClient[Document] = MongoClient(
        mongodb_uri,
        serverSelectionTimeoutMS=5_000,
        socketTimeoutMS=SOCKET_TIMEOUT_MS,
        # Dates outside Python's range read as DatetimeMS instead of failing the read.
        datetime_conversion=DatetimeConversion.DATETIME_AUTO,
    )
    try:
        yield Harness(mongodb_uri, database, str(tmp_path / "records"), client)
    finally:
        client.drop_database(database)
        client.close()
