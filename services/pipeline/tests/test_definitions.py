"""The code location loads (as `dagster` itself loads it), with its job, checks and schedule."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun  # no public constructor for a run

from pipeline.definitions import build_definitions
from pipeline.schedules import JOB_NAME, SCHEDULE_NAME
from pipeline.settings import SettingsError, load

if TYPE_CHECKING:
    from conftest import Harness

DAGSTER = str(Path(sys.executable).with_name("dagster"))


def validate(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")}
    return subprocess.run(
        [DAGSTER, "definitions", "validate", "-m", "pipeline.definitions"],
        env={**clean, "DAGSTER_HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_dagster_definitions_validate_passes(tmp_path: Path) -> None:
    result = validate({}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_dagster_definitions_validate_names_a_bad_cron(tmp_path: Path) -> None:
    result = validate({"PIPELINE_SCHEDULE_CRON": "every hour"}, tmp_path)
    assert result.returncode != 0
    assert "PIPELINE_SCHEDULE_CRON='every hour' is not a valid cron expression" in (
        result.stdout + result.stderr
    )


def test_defaults_hourly_schedule_running_with_checks() -> None:
    defs = build_definitions(load({}))
    schedule = defs.resolve_schedule_def(SCHEDULE_NAME)
    assert schedule.cron_schedule == "0 * * * *"
    assert schedule.execution_timezone == "UTC"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    job = defs.resolve_job_def(JOB_NAME)
    assert schedule.job_name == job.name
    check_names = {key.name for key in job.asset_layer.asset_graph.asset_check_keys}
    assert check_names == {
        "row_count_matches_mongodb",
        "documents_exportable",
        "ids_present_and_unique",
        "schema_as_expected",
    }


def test_schedule_from_environment() -> None:
    env = {"PIPELINE_SCHEDULE_CRON": "*/15 * * * *", "PIPELINE_SCHEDULE_ENABLED": "false"}
    schedule = build_definitions(load(env)).resolve_schedule_def(SCHEDULE_NAME)
    assert schedule.cron_schedule == "*/15 * * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PIPELINE_SCHEDULE_ENABLED": "maybe"}, "PIPELINE_SCHEDULE_ENABLED must be one of"),
        ({"PIPELINE_MONGODB_TIMEOUT_MS": "soon"}, "PIPELINE_MONGODB_TIMEOUT_MS must be a positive"),
        ({"PIPELINE_S3_ENDPOINT_URL": "minio:9000"}, "PIPELINE_S3_ENDPOINT_URL must start with"),
    ],
)
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load(env)


def test_schedule_skips_while_an_export_is_running() -> None:
    schedule = build_definitions(load({})).resolve_schedule_def(SCHEDULE_NAME)
    with dg.instance_for_test() as instance:
        context = dg.build_schedule_context(instance=instance)
        assert len(schedule.evaluate_tick(context).run_requests or []) == 1
        run = DagsterRun(job_name=JOB_NAME, run_id="active-run", status=dg.DagsterRunStatus.STARTED)
        instance.add_run(run)
        tick = schedule.evaluate_tick(context)
        assert not tick.run_requests
        assert tick.skip_message == f"run active-run of {JOB_NAME} is active"


def test_job_from_environment_writes_to_pipeline_delta_uri(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness.seed(25)
    env = {
        "PIPELINE_MONGODB_URI": harness.uri,
        "PIPELINE_MONGODB_DATABASE": harness.database,
        "PIPELINE_DELTA_URI": harness.table,
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    job = build_definitions(load()).resolve_job_def(JOB_NAME)
    result = job.execute_in_process()
    assert result.success
    assert len(harness.delta_frame()) == 25
    assert all(harness.checks(result).values())
