"""The Dagster code location ``pipeline.definitions`` (object ``defs``).

Local use: ``dagster dev -m pipeline.definitions``; one run from the command line:
``dagster asset materialize -m pipeline.definitions --select records_delta``.
"""

from __future__ import annotations

import dagster as dg

from pipeline import settings as settings_module
from pipeline.assets import records_delta
from pipeline.checks import CHECKS
from pipeline.resources import DeltaTableResource, MongoResource
from pipeline.schedules import build_schedule, export_job


def build_definitions(settings: settings_module.Settings) -> dg.Definitions:
    # Secrets are EnvVars: resolved when a run starts, never displayed.
    secret = dg.EnvVar("PIPELINE_S3_SECRET_ACCESS_KEY") if settings.has_s3_secret else None
    return dg.Definitions(
        assets=[records_delta],
        asset_checks=CHECKS,
        jobs=[export_job],
        schedules=[build_schedule(settings.schedule_cron, settings.schedule_enabled)],
        resources={
            "mongodb": MongoResource(
                uri=dg.EnvVar("PIPELINE_MONGODB_URI"),
                database=settings.mongodb_database,
                collection=settings.mongodb_collection,
                server_selection_timeout_ms=settings.mongodb_timeout_ms,
            ),
            "delta_table": DeltaTableResource(
                uri=settings.delta_uri,
                s3_endpoint_url=settings.s3_endpoint_url,
                s3_access_key_id=settings.s3_access_key_id,
                s3_secret_access_key=secret,
                s3_region=settings.s3_region,
                target_file_size=settings.delta_target_file_size,
            ),
        },
        # One step per run: running it in the run's own process saves a process start.
        executor=dg.in_process_executor,
    )


defs = build_definitions(settings_module.load())
