"""Bad configuration fails the run with a message that says what is wrong and where."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.resources import DeltaTableResource, MongoResource
from stacktools.net import free_port

if TYPE_CHECKING:
    from conftest import Harness


def test_unreachable_mongodb_names_host_and_timeout(harness: Harness) -> None:
    port = free_port()  # nothing listens here
    resources = harness.resources()
    resources["mongodb"] = MongoResource(
        uri=f"mongodb://pipeline:s3cret-word@127.0.0.1:{port}/?authSource=admin",
        server_selection_timeout_ms=400,
    )
    started = time.monotonic()
    result = harness.run(resources)
    assert time.monotonic() - started < 15
    message = harness.failure(result)
    assert f"MongoDB at 127.0.0.1:{port} did not answer within 400 ms" in message
    assert "s3cret-word" not in message
    assert not (Path(harness.table) / "_delta_log").exists()


def test_malformed_mongodb_uri(harness: Harness) -> None:
    resources = harness.resources()
    resources["mongodb"] = MongoResource(uri="postgres://127.0.0.1:5432/db")
    assert "the MongoDB URI is not valid" in harness.failure(harness.run(resources))


def test_unwritable_table_path_is_named(harness: Harness, tmp_path: Path) -> None:
    harness.seed(10)
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    table = blocker / "records"
    resources = harness.resources()
    resources["delta_table"] = DeltaTableResource(uri=str(table))
    message = harness.failure(harness.run(resources))
    assert message.startswith(f"cannot write the Delta table at {table}:")
    assert "Not a directory" in message


def test_unreachable_s3_endpoint_is_named(harness: Harness) -> None:
    harness.seed(10)
    port = free_port()  # no S3 server: the write cannot reach the endpoint
    resources = harness.resources()
    resources["delta_table"] = DeltaTableResource(
        uri="s3://no-such-bucket/records",
        s3_endpoint_url=f"http://127.0.0.1:{port}",
        s3_access_key_id="pipeline",
        s3_secret_access_key="not-a-real-secret",
    )
    message = harness.failure(harness.run(resources))
    assert f"Delta table at s3://no-such-bucket/records (S3 endpoint http://127.0.0.1:{port})" in (
        message
    )
