"""Dagster resources: the MongoDB collection to read and the Delta table location to write."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from pipeline.delta import DEFAULT_TARGET_FILE_SIZE, DeltaTarget
from pipeline.mongo import MongoSource


class MongoResource(dg.ConfigurableResource["MongoResource"]):
    """The MongoDB collection holding the records (``{_id, score, created_at, updated_at}``)."""

    uri: str = Field(description="MongoDB connection URI (PIPELINE_MONGODB_URI)")
    database: str = Field(default="uploads", description="PIPELINE_MONGODB_DATABASE")
    collection: str = Field(default="records", description="PIPELINE_MONGODB_COLLECTION")
    server_selection_timeout_ms: int = Field(
        default=5_000,
        gt=0,
        description="How long to wait for a reachable server (PIPELINE_MONGODB_TIMEOUT_MS)",
    )
    socket_timeout_ms: int = Field(
        default=300_000, gt=0, description="How long one read or count may take"
    )
    batch_size: int = Field(
        default=10_000, gt=0, description="Documents per cursor batch and per Arrow batch"
    )

    def source(self) -> MongoSource:
        return MongoSource(
            uri=self.uri,
            database=self.database,
            collection=self.collection,
            server_selection_timeout_ms=self.server_selection_timeout_ms,
            socket_timeout_ms=self.socket_timeout_ms,
            batch_size=self.batch_size,
        )


class DeltaTableResource(dg.ConfigurableResource["DeltaTableResource"]):
    """Where the Delta table lives: a local path or ``s3://bucket/prefix``.

    For ``s3://`` the S3 settings become delta-rs storage options. delta-rs (>= 0.23) commits
    with conditional puts (If-None-Match) on S3 by default, which S3, MinIO and R2 honour, so
    concurrent writers cannot overwrite each other's commits without a DynamoDB lock.
    """

    uri: str = Field(description="Table location (PIPELINE_DELTA_URI)")
    s3_endpoint_url: str | None = Field(default=None, description="PIPELINE_S3_ENDPOINT_URL")
    s3_access_key_id: str | None = Field(default=None, description="PIPELINE_S3_ACCESS_KEY_ID")
    s3_secret_access_key: str | None = Field(
        default=None, description="PIPELINE_S3_SECRET_ACCESS_KEY"
    )
    s3_region: str = Field(default="us-east-1", description="PIPELINE_S3_REGION")
    target_file_size: int = Field(
        default=DEFAULT_TARGET_FILE_SIZE,
        gt=0,
        description=(
            "Bytes per data file (PIPELINE_DELTA_TARGET_FILE_SIZE); applied when the table is "
            "created or fully refreshed"
        ),
    )

    def target(self) -> DeltaTarget:
        if not self.uri.startswith("s3://"):
            return DeltaTarget(self.uri, target_file_size=self.target_file_size)
        options = {"AWS_REGION": self.s3_region}
        if self.s3_endpoint_url:
            options["AWS_ENDPOINT_URL"] = self.s3_endpoint_url
            if self.s3_endpoint_url.startswith("http://"):
                options["AWS_ALLOW_HTTP"] = "true"
        if self.s3_access_key_id:
            options["AWS_ACCESS_KEY_ID"] = self.s3_access_key_id
        if self.s3_secret_access_key:
            options["AWS_SECRET_ACCESS_KEY"] = self.s3_secret_access_key
        return DeltaTarget(self.uri, options, self.target_file_size)
