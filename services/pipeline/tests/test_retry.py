"""Issue 16 item 10: transient MongoDB errors are retried; logs stay readable.

* The export_records job (what the schedule runs) has a retry policy: a MongoDB outage that
  ends within the retries costs a delay, not a run. Errors that cannot go away (an unwritable
  path) fail at once. Before, ``allow_retries=True`` had no policy to act on.
* Invalid documents are named in logs and metadata with their id cut to 40 characters.
* The modules' docstrings are prose (a ``#`` comment had ended up inside one).
"""

from __future__ import annotations

import ast
import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
import pytest
from pymongo import MongoClient

import pipeline
from pipeline.definitions import build_definitions
from pipeline.schedules import JOB_NAME
from pipeline.settings import load

if TYPE_CHECKING:
    from conftest import Harness

    from stacktools.servers.ferretdb import FerretDB


def job_env(uri: str, table: Path) -> dict[str, str]:
    return {
        "PIPELINE_MONGODB_URI": uri,
        "PIPELINE_MONGODB_DATABASE": "retry",
        "PIPELINE_MONGODB_TIMEOUT_MS": "1000",
        "PIPELINE_DELTA_URI": str(table),
        "PIPELINE_SCHEDULE_ENABLED": "false",
    }


def event_types(result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.event_type_value for e in result.all_events]


def test_scheduled_job_retries_through_a_mongodb_outage(
    ferretdb_server: FerretDB, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    client: MongoClient[dict[str, object]]
    with MongoClient[dict[str, object]](ferretdb_server.uri) as client:
        client.retry.records.insert_many(
            [
                {"_id": f"r{i}", "score": 0.5, "created_at": now, "updated_at": now}
                for i in range(10)
            ]
        )
    for name, value in job_env(ferretdb_server.uri, tmp_path / "records").items():
        monkeypatch.setenv(name, value)
    job = build_definitions(load()).resolve_job_def(JOB_NAME)

    ferretdb_server.stop()  # the outage: the first attempt cannot reach MongoDB
    started = time.monotonic()
    with dg.DagsterInstance.ephemeral() as instance, ThreadPoolExecutor(1) as pool:
        run = pool.submit(job.execute_in_process, instance=instance, raise_on_error=False)
        # MongoDB comes back once the first attempt has failed, before the retry (10 s later).
        # Started from this thread: FerretDB stops when the thread that started it ends.
        deadline = time.monotonic() + 120
        while not any(
            e.dagster_event_type == "STEP_UP_FOR_RETRY"
            for record in instance.get_run_records()
            for e in instance.all_logs(record.dagster_run.run_id)
        ):
            assert not run.done(), "the run ended without asking for a retry"
            assert time.monotonic() < deadline
            time.sleep(0.2)
        ferretdb_server.start()
        result = run.result(timeout=120)
    assert result.success, "the job did not retry through the outage"
    assert event_types(result).count("STEP_UP_FOR_RETRY") == 1
    assert time.monotonic() - started >= 10  # the policy's delay
    (event,) = result.asset_materializations_for_node("records_delta")
    assert event.metadata["rows_inserted"].value == 10


def test_errors_that_cannot_go_away_are_not_retried(
    harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    for name, value in job_env(harness.uri, blocker / "records").items():
        monkeypatch.setenv(name, value)
    job = build_definitions(load()).resolve_job_def(JOB_NAME)
    started = time.monotonic()
    result = job.execute_in_process(raise_on_error=False)
    assert not result.success
    assert "STEP_UP_FOR_RETRY" not in event_types(result)
    assert time.monotonic() - started < 10


def test_long_ids_are_cut_in_logs_and_metadata(harness: Harness) -> None:
    harness.seed(5)
    stamp = harness.now()
    long_id = "L" * 300  # longer than an id may be: invalid, and named
    harness.collection.insert_one(
        {"_id": long_id, "score": 0.5, "created_at": stamp, "updated_at": stamp}
    )
    result = harness.run()
    assert result.success
    examples = harness.metadata(result)["invalid_examples"]
    assert long_id not in examples
    assert f"{'L' * 40!r}... (300 characters): _id must be a string of 1..256" in examples
    assert len(examples) < 150


def test_module_docstrings_are_prose() -> None:
    for path in sorted(Path(pipeline.__file__).parent.glob("*.py")):
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        comments = [line for line in docstring.splitlines() if line.lstrip().startswith("#")]
        assert not comments, f"{path.name}: a comment inside the docstring: {comments}"
