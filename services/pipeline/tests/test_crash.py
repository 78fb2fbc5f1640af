"""A run SIGKILLed while it writes leaves the table at its last version; the next run heals.

The export runs as `dagster asset materialize` in its own process group, like a run worker
in a pod, as a full refresh (the biggest write). delta-rs flushes a data file whenever one
reaches the target size (small here), and commits the log entry only after the last one; the
test kills the process group as soon as the first new data file appears in the table folder,
so the kill lands in the middle of the write, with files on disk and no commit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from deltalake import DeltaTable
from polars.testing import assert_frame_equal

if TYPE_CHECKING:
    from conftest import Harness

DAGSTER = str(Path(sys.executable).with_name("dagster"))
RECORD_COLUMNS = ["id", "score", "created_at", "updated_at"]
BIG = 100_000  # large enough that the write takes seconds, small enough for the suite
FILE_SIZE = 256 * 1024  # bytes per data file: the 100k rows become several files


def data_files(table: str) -> set[str]:
    return {p.name for p in Path(table).iterdir() if p.name.startswith("part-")}


def test_sigkill_during_write_keeps_last_version_and_next_run_completes(
    harness: Harness, tmp_path: Path
) -> None:
    harness.seed(2_000, prefix="before")
    assert harness.run().success
    committed = harness.delta_frame()
    files_before = data_files(harness.table)
    log_before = sorted(os.listdir(Path(harness.table) / "_delta_log"))

    harness.seed(BIG, prefix="bulk", at=harness.now())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PIPELINE_")},
        "DAGSTER_HOME": str(tmp_path),
        "PIPELINE_MONGODB_URI": harness.uri,
        "PIPELINE_MONGODB_DATABASE": harness.database,
        "PIPELINE_DELTA_URI": harness.table,
        "PIPELINE_DELTA_TARGET_FILE_SIZE": str(FILE_SIZE),
        "PIPELINE_SCHEDULE_ENABLED": "false",
    }
    config = {"ops": {"records_delta": {"config": {"full_refresh": True}}}}
    command = [DAGSTER, "asset", "materialize", "-m", "pipeline.definitions"]
    command += ["--select", "records_delta", "--config-json", json.dumps(config)]
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 240
            while not data_files(harness.table) - files_before:
                assert process.poll() is None, log_path.read_text()[-3000:]
                assert time.monotonic() < deadline, "the run wrote no data file"
                time.sleep(0.005)
            os.killpg(process.pid, signal.SIGKILL)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    assert "full_refresh: read" not in log_path.read_text()  # it never finished

    # Data files of the dead run are on disk, but the log has no new entry: the table opens
    # at the version committed before the crash, with exactly its rows.
    assert data_files(harness.table) - files_before
    assert sorted(os.listdir(Path(harness.table) / "_delta_log")) == log_before
    assert DeltaTable(harness.table).version() == 0
    assert_frame_equal(harness.delta_frame(), committed)

    # The next (scheduled, incremental) run completes: every document once, none twice.
    result = harness.run()
    assert result.success
    assert harness.metadata(result)["table_version"] == 1
    final = harness.delta_frame()
    assert final["id"].n_unique() == len(final) == 2_000 + BIG
    assert_frame_equal(final.select(RECORD_COLUMNS), harness.mongo_frame())
    assert all(harness.checks(result).values())
