"""The export job and its schedule (cron and on/off from the PIPELINE_* settings)."""

from __future__ import annotations

import dagster as dg

from pipeline.assets import records_delta
from pipeline.settings import SettingsError

JOB_NAME = "export_records"
SCHEDULE_NAME = "export_records_schedule"
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]

# Scheduled runs ride out a MongoDB failover or a lost commit race: a step that fails with an
# error that trying again can help (a dg.Failure with allow_retries, see assets.py) is retried
# after 10 s, 30 s and 70 s (Dagster's exponential backoff). Errors that cannot go away (bad
# URI, bad path, bad run config) fail at once. Materializations started from the UI or CLI
# run without retries.
RETRY_POLICY = dg.RetryPolicy(max_retries=3, delay=10, backoff=dg.Backoff.EXPONENTIAL)

export_job = dg.define_asset_job(
    JOB_NAME,
    selection=dg.AssetSelection.assets(records_delta),  # with its asset checks
    description="Export MongoDB uploads.records into the Delta table (incremental).",
    op_retry_policy=RETRY_POLICY,
)


def build_schedule(cron: str, enabled: bool) -> dg.ScheduleDefinition:
    """The schedule; it skips a tick while an export is still queued or running."""
    status = dg.DefaultScheduleStatus.RUNNING if enabled else dg.DefaultScheduleStatus.STOPPED

    def skip_while_running(
        context: dg.ScheduleEvaluationContext,
    ) -> dg.RunRequest | dg.SkipReason:
        active = context.instance.get_run_records(
            dg.RunsFilter(job_name=JOB_NAME, statuses=_ACTIVE), limit=1
        )
        if active:
            return dg.SkipReason(f"run {active[0].dagster_run.run_id} of {JOB_NAME} is active")
        return dg.RunRequest()

    try:
        return dg.schedule(
            cron_schedule=cron,
            job=export_job,
            name=SCHEDULE_NAME,
            default_status=status,
            execution_timezone="UTC",
            description=f"Incremental export, cron {cron!r} (UTC)",
        )(skip_while_running)
    except dg.DagsterInvalidDefinitionError as exc:
        msg = f"PIPELINE_SCHEDULE_CRON={cron!r} is not a valid cron expression: {exc}"
        raise SettingsError(msg) from None
