"""Issue 16 item 7: no two writers of the table run at once, however they were started.

The asset is in Dagster's concurrency pool ``records_delta``; the deployment gives the pool a
limit of 1 (here: the instance's dagster.yaml, ``concurrency: pools: default_limit: 1``). Two
``dagster asset materialize`` processes started together on one instance, as a person at the
CLI and a scheduled run would be: the second run's step waits for the first one's to finish.
Before, the schedule only skipped a tick while an export_records run was active, and runs
started any other way overlapped.

The test holds the pool's one slot itself until both runs have reported that they wait for it,
so both are sure to contend however fast the machine (a quiet machine finished one run before
the other had started its step); then it frees the slot and the two must run one at a time.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pytest
from polars.testing import assert_frame_equal

from pipeline.assets import POOL, records_delta

if TYPE_CHECKING:
    from conftest import Harness

DAGSTER = str(Path(sys.executable).with_name("dagster"))
RECORD_COLUMNS = ["id", "score", "created_at", "updated_at"]
ROWS = 20_000  # each run reads and writes for several seconds
# Each CLI run also runs the asset checks (FerretDB counts the collection for them): on two
# shared cores at load average 30 one run took over six minutes with 50,000 documents.
RUN_TIMEOUT_S = 840
HOLDER = ("test-holds-the-pool", "holder")  # the (run id, step key) the test claims the slot as


def blocked_runs(instance: dg.DagsterInstance) -> set[str]:
    """Runs whose records_delta step reported waiting for the pool's slot."""
    return {
        record.dagster_run.run_id
        for record in instance.get_run_records()
        for event in instance.all_logs(record.dagster_run.run_id)
        if f"blocked by limit for pool {POOL}" in (event.message or "")
    }


def materialize(harness: Harness, home: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")},
        "DAGSTER_HOME": str(home),
        "PIPELINE_MONGODB_URI": harness.uri,
        "PIPELINE_MONGODB_DATABASE": harness.database,
        "PIPELINE_DELTA_URI": harness.table,
        "PIPELINE_SCHEDULE_ENABLED": "false",
    }
    config = {"ops": {"records_delta": {"config": {"full_refresh": True}}}}
    command = [DAGSTER, "asset", "materialize", "-m", "pipeline.definitions"]
    command += ["--select", "records_delta", "--config-json", json.dumps(config)]
    with log.open("wb") as out:
        return subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.mark.timeout(RUN_TIMEOUT_S + 60)
def test_two_runs_started_together_write_one_after_the_other(
    harness: Harness, tmp_path: Path
) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("concurrency:\n  pools:\n    default_limit: 1\n")
    # The instance's SQLite storage is created once, here: two processes creating it at the
    # same moment race on its tables ("table run_tags already exists").
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.get_run_records() == []
        assert instance.event_log_storage.supports_global_concurrency_limits
        assert instance.schedule_storage is not None
        instance.event_log_storage.initialize_concurrency_limit_to_default(POOL)
        assert instance.event_log_storage.claim_concurrency_slot(POOL, *HOLDER).is_claimed
    harness.seed(ROWS)

    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    processes = [materialize(harness, home, log) for log in logs]
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        with dg.DagsterInstance.from_config(str(home)) as instance:
            while len(blocked_runs(instance)) < len(processes):
                ended = [
                    log.read_text()[-3000:]
                    for p, log in zip(processes, logs, strict=True)
                    if p.poll() is not None
                ]
                assert not ended, f"a run ended while the test held the pool's slot: {ended}"
                assert time.monotonic() < deadline, "the runs did not both wait for the pool"
                time.sleep(1)
            instance.event_log_storage.free_concurrency_slot_for_step(*HOLDER)
        for process, log in zip(processes, logs, strict=True):
            assert process.wait(timeout=RUN_TIMEOUT_S) == 0, log.read_text()[-3000:]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_run_records()
        assert len(runs) == 2
        spans = []
        for record in runs:
            run_id = record.dagster_run.run_id
            assert record.dagster_run.status == dg.DagsterRunStatus.SUCCESS
            events = instance.all_logs(run_id)
            steps = [e for e in events if e.step_key == "records_delta" and e.is_dagster_event]
            start = min(e.timestamp for e in steps if e.dagster_event_type == "STEP_START")
            end = max(e.timestamp for e in steps if e.dagster_event_type == "STEP_SUCCESS")
            spans.append((start, end))
        event = instance.get_latest_materialization_event(records_delta.key)
    (first, second) = sorted(spans)
    assert first[1] <= second[0], f"the two writers overlapped: {spans}"
    assert records_delta.op.pool == POOL
    assert event is not None
    assert event.asset_materialization is not None
    assert event.asset_materialization.metadata["pool_limit"].value == 1
    assert_frame_equal(harness.delta_frame().select(RECORD_COLUMNS), harness.mongo_frame())


def test_a_run_on_an_instance_without_a_pool_limit_says_so(harness: Harness) -> None:
    harness.seed(5)
    with dg.DagsterInstance.ephemeral() as instance:  # no pool limits configured
        result = harness.run(instance=instance)
        assert result.success
        warnings = [
            e.user_message
            for e in instance.all_logs(result.run_id)
            if not e.is_dagster_event and int(e.level) >= logging.WARNING
        ]
    assert harness.metadata(result)["pool_limit"] is None
    assert any(f"concurrency pool '{POOL}' has no limit" in w for w in warnings), warnings
