"""The table on S3: a real S3-compatible server (moto_server from PyPI) on loopback."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3  # type: ignore[import-untyped]  # moto depends on it; no stubs installed
import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake
from polars.testing import assert_frame_equal

from pipeline.resources import DeltaTableResource
from stacktools.net import free_port, wait_for_port

if TYPE_CHECKING:
    from conftest import Harness

ACCESS_KEY = "pipeline-test"
SECRET_KEY = "generated-per-test-" + uuid.uuid4().hex  # moto accepts any key pair
RECORD_COLUMNS = ["id", "score", "created_at", "updated_at"]


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.fixture
def bucket(s3_endpoint: str) -> str:
    name = f"lake-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=name)
    return name


def s3_resources(harness: Harness, endpoint: str, uri: str) -> dict[str, Any]:
    resources = harness.resources()
    resources["delta_table"] = DeltaTableResource(
        uri=uri,
        s3_endpoint_url=endpoint,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
    )
    return resources


def storage(endpoint: str) -> dict[str, str]:
    """Storage options written out independently of the pipeline's resource."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
    }


def test_full_and_incremental_export_to_s3(harness: Harness, s3_endpoint: str, bucket: str) -> None:
    uri = f"s3://{bucket}/lake/records"
    resources = s3_resources(harness, s3_endpoint, uri)
    ids = harness.seed(400)
    result = harness.run(resources)
    assert result.success
    assert all(harness.checks(result).values())

    harness.table = uri
    options = {"storage_options": storage(s3_endpoint)}
    assert_frame_equal(harness.delta_frame(**options).select(RECORD_COLUMNS), harness.mongo_frame())

    later = harness.now() + dt.timedelta(milliseconds=5)
    harness.collection.update_one({"_id": ids[0]}, {"$set": {"score": 0.5, "updated_at": later}})
    harness.seed(3, prefix="more", at=later)
    result = harness.run(resources)
    assert result.success
    meta = harness.metadata(result)
    assert (meta["rows_inserted"], meta["rows_updated"], meta["table_version"]) == (3, 1, 1)
    assert_frame_equal(harness.delta_frame(**options).select(RECORD_COLUMNS), harness.mongo_frame())

    again = harness.metadata(harness.run(resources))
    assert (again["mode"], again["table_version"]) == ("unchanged", 1)

    keys = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
    ).list_objects_v2(Bucket=bucket, Prefix="lake/records/_delta_log/")
    commits = sorted(o["Key"].rsplit("/", 1)[1] for o in keys["Contents"])
    assert commits == ["00000000000000000000.json", "00000000000000000001.json"]


def test_concurrent_commits_on_s3_do_not_overwrite_each_other(
    s3_endpoint: str, bucket: str
) -> None:
    """Two writers holding the same version both commit: the second gets the next version.

    delta-rs commits with put-if-absent on S3; the server refuses the second put of the same
    log entry, delta-rs notices, checks for conflicts and retries at the next version. Were
    the put unconditional, the second writer would silently replace the first's commit.
    """
    uri = f"s3://{bucket}/concurrent"
    options = storage(s3_endpoint)
    write_deltalake(uri, pa.table({"n": [0]}), storage_options=options)
    first = DeltaTable(uri, storage_options=options)
    second = DeltaTable(uri, storage_options=options)
    write_deltalake(first, pa.table({"n": [1]}), mode="append")
    write_deltalake(second, pa.table({"n": [2]}), mode="append")
    table = DeltaTable(uri, storage_options=options)
    assert table.version() == 2
    assert pl.read_delta(uri, storage_options=options)["n"].sort().to_list() == [0, 1, 2]
